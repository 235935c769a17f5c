"""The bake-off past one machine (issue 32) and its URL safety (issue 28 item 5), through the trainer's real routes
on loopback: a bake-off reaches only the encoders the trainer was configured with (a URL not configured is a 422
before any request: a listener here receives nothing), no error echoes a remote body, the token goes only to
configured URLs; the cost plan is recorded before the cells run; baseline rows (`state`); resume reruns only the
cells not finished. Tiny sizes: plumbing, not a result."""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager

import httpx
import pytest

from services.trainer import bakeoff
from vjepa_robot_client.contract import BakeoffRequest, RunStatus

TOKEN = "scale-test-token-1234567890"


@contextmanager
def listener(status: int = 200, body: bytes = b"{}"):
    """A plain HTTP server on loopback that records every request it receives (path and Authorization)."""
    from _servers import free_port

    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *a):
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def secret_listener():
    with listener(500, b'{"detail": "REMOTE-SECRET-BODY"}') as got:
        yield got


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, secret_listener):
    """A trainer with a token, its --encoder-url pointing at nothing, and one more configured URL (the listener
    that answers 500 with a body) through VJEPA_ROBOT_ENCODER_URLS."""
    from _servers import free_port, serve_app

    from services.trainer.app import TrainerSettings, create_app

    root = tmp_path_factory.mktemp("scale")
    url, _ = secret_listener
    mp = pytest.MonkeyPatch()
    mp.setenv(bakeoff.ENCODER_URLS_ENV, f"{url}/ , not a url")
    settings = TrainerSettings(
        store=str(root / "store"), runs=str(root / "runs"), encoder_url=f"http://127.0.0.1:{free_port()}", token=TOKEN
    )
    app = create_app(settings)
    mp.undo()
    with serve_app(app, startup_timeout=120) as base:
        yield {"url": base, "runs": root / "runs"}


def _post(trainer, body: dict):
    return httpx.post(f"{trainer['url']}/bakeoff", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_an_encoder_url_not_configured_is_refused_before_any_request(trainer):
    with listener() as (url, seen):
        for sent in (f"{url}/anything?x=1#", url, f"{url}/info"):
            r = _post(trainer, {"encoders": [sent], "seeds": [0]})
            assert r.status_code == 422, r.text
            assert "not configured" in r.json()["detail"] or "query or fragment" in r.json()["detail"]
        assert seen == []  # no request reached it, so no token either
    assert not (trainer["runs"] / "bakeoffs").exists()  # nothing recorded


def test_a_configured_encoder_gets_the_token_and_its_body_is_never_echoed(trainer, secret_listener):
    url, seen = secret_listener
    r = _post(trainer, {"encoders": [url], "seeds": [0]})  # configured as "{url}/": the same service
    assert r.status_code == 422 and "GET /info" in r.json()["detail"] and "HTTP 500" in r.json()["detail"]
    assert "REMOTE-SECRET-BODY" not in r.text
    assert seen and all(s["auth"] == f"Bearer {TOKEN}" for s in seen)  # the token went to the configured URL only


def test_url_normalisation():
    assert bakeoff.normalise_url("HTTP://LocalHost:80/") == "http://localhost:80"
    assert bakeoff.normalise_url("https://enc.example/v1/") == "https://enc.example:443/v1"
    for bad in ("ftp://x", "http://u:p@host:1", "http://host:1/?a=1", "http://host:1/#", "nonsense"):
        with pytest.raises(ValueError):
            bakeoff.normalise_url(bad)
    allowed = bakeoff.configured_encoders("http://127.0.0.1:8001", "http://gpu:8001/, http://gpu2:9000")
    assert allowed == {"http://127.0.0.1:8001", "http://gpu:8001", "http://gpu2:9000"}
    bakeoff.check_allowed(["http://gpu:8001"], allowed)
    bakeoff.check_allowed(["http://anything:1"], None)  # the CLI's own URLs: its user typed them


def test_baseline_rows_plan_first_then_resume_only_the_unfinished(trainer):
    """A `state` baseline bake-off on two tasks through POST /bakeoff: the plan (cells, frames, windows, BC steps,
    estimate per executor) is in the record from the start; after it ends, one cell is made `interrupted` as a
    crash leaves it, and POST /bakeoff/{id}/resume reruns that cell alone."""
    from vjepa_robot_client import TrainerClient

    tr = TrainerClient(trainer["url"], token=TOKEN)
    record = tr.bakeoff(
        [], baselines=["state"], tasks=["easy", "hard"], seeds=[0], episodes=2, steps=20, image_size=16, epochs=1,
        eval_episodes=1, parallel_envs=1, workers=1, cell_workers=2,
    )  # fmt: skip
    assert record.status.value in ("queued", "running") and len(record.cells) == 2
    plan = record.plan
    assert plan["workload"]["cells"] == 2 and plan["workload"]["frames_to_render"] == 2 * 2 * 20
    assert plan["workload"]["windows_to_encode"] == 0 and plan["workload"]["bc_steps"] == 2
    assert "local" in plan["estimate"] and "slurm" in plan["estimate"] and "2 cells" in plan["summary"]
    assert plan["estimate"]["rates"]["render_fps"] > 0
    done = tr.wait_bakeoff(record.bakeoff_id, progress=False, timeout=600, poll_interval=0.5)
    assert done.status.value == "succeeded", (done.error, [c.error for c in done.cells])
    assert all(c.features == "state" and "`state` features (baseline)" in done.table for c in done.cells)
    assert [c.attempts for c in done.cells] == [1, 1]
    again = httpx.post(
        f"{trainer['url']}/bakeoff/{done.bakeoff_id}/resume", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert again.status_code == 409 and "nothing to resume" in again.json()["detail"]

    # a crash during cell-001: its record says running (the trainer died), its cell state too
    path = trainer["runs"] / "bakeoffs" / done.bakeoff_id / bakeoff.RECORD_JSON
    rec = bakeoff.BakeoffRecord.model_validate_json(path.read_text())
    rec.status, rec.cells[1].status = RunStatus.running, RunStatus.running
    path.write_text(rec.model_dump_json())
    assert tr.get_bakeoff(done.bakeoff_id).status.value == "interrupted"  # no job here runs it
    resumed = tr.resume_bakeoff(done.bakeoff_id)
    assert resumed.resumes == 1 and resumed.plan["resumed_cells"] == ["cell-001"]
    final = tr.wait_bakeoff(done.bakeoff_id, progress=False, timeout=600, poll_interval=0.5)
    assert final.status.value == "succeeded"
    assert [c.attempts for c in final.cells] == [1, 2]  # the finished cell kept, the unfinished one run again
    assert final.cells[1].study_id == done.cells[1].study_id  # continued from its own state, not a new study
    assert final.cells[1].score.values == done.cells[1].score.values
    unknown = httpx.post(
        f"{trainer['url']}/bakeoff/bakeoff-00000000/resume", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert unknown.status_code == 404


def test_bad_requests_name_the_problem():
    with pytest.raises(ValueError, match="at least one row"):
        BakeoffRequest(encoders=[])
    with pytest.raises(ValueError, match="encoder's URL"):
        BakeoffRequest(baselines=["vjepa2"])
    with pytest.raises(ValueError, match="executor"):
        BakeoffRequest(baselines=["state"], executor="kubernetes")
    with pytest.raises(ValueError, match="cell_workers"):
        BakeoffRequest(baselines=["state"], cell_workers=0)


def test_gpu_bench_runs_on_the_cpu_with_the_tiny_preset_and_says_what_it_would_measure(tmp_path):
    """bench/gpu_bench.py with a tiny budget: one JSON file with every section measured or skipped with its reason,
    and the full GPU run's list; no GPU-hours rate is claimed from a CPU run."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "g.json"
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "gpu_bench.py"), "--preset", "tiny", "--image-size", "32",
         "--batches", "1,2", "--stream-envs", "2", "--budget-s", "150", "--max-calls", "4", "--device", "cpu",
         "--out", str(out)],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on a GPU the default run measures" in proc.stdout and "batch 1, 8, 32, 64" in proc.stdout
    data = json.loads(out.read_text())
    assert data["device"]["kind"] == "cpu" and data["finished_at"]
    rows = data["sections"]["in_process"]["batches"]
    assert set(rows) == {"1", "2"} and all(r["windows_per_s"] > 0 for r in rows.values())
    assert data["sections"]["grid_pooling"]["windows_per_s"] > 0
    assert data["sections"]["stream_in_process"]["steps_per_s"] > 0
    for name in ("http", "lite0"):
        sec = data["sections"][name]
        assert "skipped" in sec or "batches" in sec or "presets" in sec, sec
    assert any("ViT-L" in line for line in data["would_measure_on_a_gpu"])
    assert data["summary"]["vitl_windows_per_s"] is None  # a CPU run never feeds the cost plan's GPU-hours


def test_cli_prints_the_plan_first_and_resume_refuses_a_finished_bakeoff(tmp_path):
    """`vjepa-robot bake-off --baseline state` in local mode: the plan is printed before the demos are made and
    before any cell; `--resume ID` of a bake-off whose cells all succeeded fails naming why."""
    from typer.testing import CliRunner

    from vjepa_robot import cli

    common = ["--store", str(tmp_path / "store"), "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "o")]
    tiny = ["--task", "easy", "--seeds", "0", "--episodes", "2", "--steps", "20", "--image-size", "16", "--epochs",
            "1", "--eval-episodes", "1", "--parallel-envs", "1", "--workers", "1"]  # fmt: skip
    res = CliRunner().invoke(cli.app, ["bake-off", "--baseline", "state", *tiny, *common])
    assert res.exit_code == 0, res.output
    out = res.output
    assert out.index("plan: 1 cells") < out.index("dataset demos-easy-") < out.index("cell 1/1 cell-000")
    assert "frames to render" in out and "local cell_workers=1" in out
    bakeoff_id = out.split("(bake-off ")[-1].split(")")[0]
    again = CliRunner().invoke(cli.app, ["bake-off", "--resume", bakeoff_id, *common])
    assert again.exit_code != 0 and "nothing to resume" in again.output
