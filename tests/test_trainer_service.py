"""The trainer service end to end: real uvicorn servers on loopback (tiny encoder), a real LanceDB store, real
dm_control rollouts. The trainer reaches the encoder only over HTTP, through the SDK."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import poll_json, unique_name

from services.encoder.app import create_app as create_encoder_app
from services.encoder.settings import EncoderSettings
from services.trainer.app import TrainerSettings
from services.trainer.app import create_app as create_trainer_app
from vjepa_robot_client.contract import RunRecord
from vjepa_robot_client.trainer import run_progress
from vjepa_robot_lab.records.runs import RunStore

# `stack` (conftest, session): the one tiny encoder service and trainer service; names here are unique_name()s.


TERMINAL = ("succeeded", "failed", "interrupted")


@pytest.mark.slow
def test_dataset_bc_vjepa2_eval_and_baselines(stack):
    c = httpx.Client(base_url=stack["trainer"], timeout=60)
    svc = unique_name("svc")
    r = c.post(
        "/datasets",
        json={
            "name": svc,
            "expert": "jacobian",
            "task": "easy",
            "episodes": 4,
            "steps": 20,
            "seed": 1,
            "image_size": 128,
            "workers": 1,  # in process; test_env_datasets.py keeps the spawn path
        },
    )
    assert r.status_code == 202, r.text
    assert c.get(f"/datasets/{svc}").json()["status"] in ("running", "ready")
    ds = poll_json(c, f"/datasets/{svc}", lambda b: b["status"] != "running")
    assert ds["status"] == "ready" and ds["episodes"] == 4 and ds["success_rate"] is not None

    # vjepa2 features are encoded through the encoder service first (they are missing)
    r = c.post("/train/bc", json={"dataset": svc, "features": "vjepa2", "epochs": 5, "batch_size": 64})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    run = poll_json(c, f"/runs/{run_id}", lambda b: b["status"] in TERMINAL)
    assert run["status"] == "succeeded", run["error"]
    assert run["kind"] == "bc" and run["config"]["features"] == "vjepa2"
    assert (
        run["metrics"]["features_lineage"]["encoder_id"] == httpx.get(f"{stack['encoder']}/info").json()["encoder_id"]
    )
    # the frame size is part of the run's lineage: trained on the dataset's 128 px frames
    assert run["lineage"]["image_size"] == 128 and run["lineage"]["action_repeat"] == 1
    assert run["lineage"]["encoder_id"] == run["metrics"]["features_lineage"]["encoder_id"]
    assert run["lineage"]["family_label"] == "V-JEPA 2"  # GET /info's name for the family, which the report prints
    assert run_progress(RunRecord.model_validate(run)) == (5, 5)  # the SDK's progress reads keys BC writes

    # another frame size is refused unless asked for explicitly, naming both sizes
    r = c.post(f"/eval/{run_id}", json={"episodes": 2, "steps": 30, "image_size": 256})
    assert r.status_code == 422 and "256" in r.json()["detail"] and "128" in r.json()["detail"], r.text

    before = _batch_count(stack["encoder"])
    r = c.post(
        f"/eval/{run_id}", json={"episodes": 4, "steps": 30, "task": "easy", "parallel_envs": 4, "gif_episodes": 1}
    )  # image_size omitted: the run's own 128 px
    assert r.status_code == 202 and r.json()["status"] == "queued"
    ev = poll_json(c, f"/eval/{run_id}", lambda b: b["status"] in TERMINAL)
    assert ev["status"] == "succeeded", ev["error"]
    assert ev["image_size"] == 128
    assert c.get(f"/runs/{run_id}").json()["evaluations"][0]["request"]["image_size"] == 128
    assert len(ev["episodes"]) == 4 and {"seed", "success", "return"} <= set(ev["episodes"][0])
    assert all(s >= 1_000_000_000 for s in (e["seed"] for e in ev["episodes"]))  # evaluation seeds
    lo, hi = ev["success_ci95"]
    assert 0.0 <= lo <= ev["success_rate"] <= hi <= 1.0
    assert ev["steps_per_second"] > 0
    # one batched POST /encode per lockstep step: 30 steps x 1 wave of 4 envs
    assert _batch_count(stack["encoder"]) - before >= 30

    # a second evaluation at another size, asked for explicitly: GET /eval returns the latest; both stay listed
    r = c.post(
        f"/eval/{run_id}",
        json={
            "episodes": 2,
            "steps": 10,
            "parallel_envs": 2,
            "image_size": 64,
            "allow_image_size_change": True,
            "gif_episodes": 0,
        },
    )
    assert r.status_code == 202, r.text
    ev = poll_json(c, f"/eval/{run_id}", lambda b: b["eval_id"] == 1 and b["status"] in TERMINAL)
    assert ev["status"] == "succeeded" and ev["image_size"] == 64, ev
    assert len(c.get(f"/runs/{run_id}").json()["evaluations"]) == 2

    # the CLI's local mode goes through the same resolution: no --image-size -> the run's own 128 px
    from typer.testing import CliRunner

    from vjepa_robot.cli import app as cli_app

    common = ["--store", stack["store"], "--runs-dir", str(stack["runs"]), "--encoder-url", stack["encoder"]]
    out = CliRunner().invoke(
        cli_app, ["--json", "eval", run_id, "--episodes", "2", "--steps", "10", "--parallel-envs", "2", *common]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{") :])["image_size"] == 128
    out = CliRunner().invoke(
        cli_app, ["eval", run_id, "--episodes", "2", "--steps", "20", "--image-size", "64", *common]
    )
    assert out.exit_code == 2 and "64" in out.output and "128" in out.output, out.output

    # baselines go through the same evaluation loop
    r = c.post(
        "/eval/baseline",
        json={"policy": "jacobian", "episodes": 4, "steps": 100, "parallel_envs": 4, "gif_episodes": 0},
    )  # no GIF here: the run's first evaluation above records one
    assert r.status_code == 202
    base = poll_json(c, f"/eval/{r.json()['run_id']}", lambda b: b["status"] in TERMINAL)
    assert base["status"] == "succeeded" and base["success_rate"] >= 0.75
    runs = c.get("/runs").json()["runs"]
    assert {x["kind"] for x in runs} >= {"bc", "baseline"}


def _batch_count(encoder_url: str) -> float:
    text = httpx.get(f"{encoder_url}/metrics").text
    for line in text.splitlines():
        if line.startswith("vjepa_encoder_batch_size_count"):
            return float(line.split()[-1])
    raise AssertionError("vjepa_encoder_batch_size histogram missing from /metrics")


@pytest.mark.slow
@pytest.mark.parametrize("features", ["state", "vjepa2", "random"])
def test_sac_tiny_budget_through_the_service(stack, features):
    """SAC on each feature source; for vjepa2 every vector step is one POST /encode to the encoder service."""
    c = httpx.Client(base_url=stack["trainer"], timeout=60)
    small = features == "vjepa2"
    body = {
        "features": features,
        "task": "easy",
        "total_steps": 400,
        "parallel_envs": 2,
        "episode_steps": 100,
        "action_repeat": 4,
        "learning_starts": 100,
        "batch_size": 64,
        "eval_every": 200,
        "eval_episodes": 1,
        "final_eval_episodes": 1,
        "checkpoint_every": 800,
        "seed": 3,
        "image_size": 64,
    }
    r = c.post("/train/sac", json=body)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    run = poll_json(c, f"/runs/{run_id}", lambda b: b["status"] in TERMINAL, timeout=400)
    assert run["status"] == "succeeded", run["error"]
    assert run["config"]["action_repeat"] == 4
    assert run["lineage"]["action_repeat"] == 4
    assert run["lineage"]["image_size"] == (64 if small else None)  # only vjepa2 features see frames
    assert run["metrics"]["env_steps"] >= body["total_steps"]
    done, total = run_progress(RunRecord.model_validate(run))  # the SDK's progress reads keys SAC writes
    assert done == run["metrics"]["env_steps"] and total == body["total_steps"]
    assert len(run["metrics"]["curve"]) >= 1
    if small:
        assert (
            run["metrics"]["features_lineage"]["encoder_id"]
            == httpx.get(f"{stack['encoder']}/info").json()["encoder_id"]
        )
    r = c.post(f"/eval/{run_id}", json={"episodes": 2, "steps": 50, "parallel_envs": 2, "image_size": 64})
    assert r.status_code == 422 and "action_repeat" in r.json()["detail"]  # 50 simulator steps != k x 4
    # evaluated with its own action repeat: 48 simulator steps = 12 agent steps, success judged per simulator step
    r = c.post(
        f"/eval/{run_id}",
        json={"episodes": 2, "steps": 48, "parallel_envs": 2, "image_size": 64, "gif_episodes": 0},
    )
    assert r.status_code == 202
    ev = poll_json(c, f"/eval/{run_id}", lambda b: b["status"] in TERMINAL)
    assert ev["status"] == "succeeded", ev["error"]


@pytest.mark.parametrize(
    "method, path, body, code, words",
    [
        ("post", "/train/bc", {"dataset": "nope", "features": "state"}, 404, "unknown dataset"),
        ("post", "/train/bc", {"dataset": "svc", "features": "depth"}, 422, "features"),
        ("post", "/train/bc", {"dataset": "svc", "features": "state", "epochs": 0}, 422, "epochs"),
        ("post", "/train/bc", {"dataset": "../etc", "features": "state"}, 422, "dataset name"),
        ("post", "/eval/bc-00000000", {"episodes": 2}, 404, "unknown run"),
        ("get", "/eval/bc-00000000", None, 404, "unknown run"),
        ("get", "/runs/NOT_A_RUN", None, 400, "invalid run id"),
        ("post", "/eval/baseline", {"policy": "oracle"}, 422, "policy"),
        ("post", "/train/sac", {"features": "state", "episode_steps": 1001, "action_repeat": 4}, 422, "action_repeat"),
        ("post", "/datasets", {"name": "x", "expert": "nobody"}, 422, "expert"),
        ("post", "/datasets", {"name": "x", "episodes": 0}, 422, "episodes"),
        ("get", "/datasets/nothing-here", None, 404, "unknown dataset"),
    ],
)
def test_bad_requests_get_4xx_naming_the_problem(stack, method, path, body, code, words):
    c = httpx.Client(base_url=stack["trainer"], timeout=30)
    r = c.request(method.upper(), path, json=body)
    assert r.status_code == code, r.text
    assert words in r.json()["detail"], r.json()
    assert c.get("/healthz").status_code == 200  # and it keeps serving


def test_trainer_conventions_info_metrics_offline_docs_and_list_shapes(tmp_path):
    """/info says what the trainer is and can do; /metrics counts runs by kind and status and requests by route;
    /docs loads its Swagger UI assets from the service itself (no CDN); list routes answer objects."""
    from fastapi.testclient import TestClient

    runs = RunStore(tmp_path / "runs")
    runs.create("bc", {"dataset": "d", "features": "state"}).update(status="failed", error="x")
    app = create_trainer_app(
        TrainerSettings(store=str(tmp_path / "store"), runs=str(tmp_path / "runs"), encoder_url="http://127.0.0.1:9")
    )
    with TestClient(app) as c:
        info = c.get("/info").json()
        assert info["runs_dir"] == str(tmp_path / "runs") and info["encoder_url"] == "http://127.0.0.1:9"
        assert info["store"] == str(tmp_path / "store") and info["version"]
        assert "state" in info["feature_sources"] and "POST /train/bc" in info["routes"]
        assert c.get("/datasets").json() == {"datasets": []}
        assert c.get("/studies").json() == {"studies": []}
        c.get("/runs/bc-00000000")
        text = c.get("/metrics").text
        assert 'vjepa_trainer_runs{kind="bc",status="failed"} 1.0' in text
        assert 'vjepa_trainer_requests_total{method="GET",route="/runs/{run_id}",status="404"} 1.0' in text
        assert "vjepa_trainer_eval_steps_per_second" in text
        html = c.get("/docs").text
        assert "cdn" not in html.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/docs-assets/{asset}" in html
            r = c.get(f"/docs-assets/{asset}")
            assert r.status_code == 200 and len(r.content) > 10_000


def test_encoder_docs_are_served_offline_too(tmp_path):
    from fastapi.testclient import TestClient

    app = create_encoder_app(EncoderSettings(store=str(tmp_path / "store"), preset="tiny"))
    with TestClient(app) as c:
        html = c.get("/docs").text
        assert "cdn" not in html.lower() and "/docs-assets/swagger-ui-bundle.js" in html
        assert c.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_eval_request_defaults_live_in_one_place():
    """The SDK sends only what the caller gave; EvalRequest fills the rest (image_size: left to the run)."""
    from vjepa_robot_client.contract import DEFAULT_EVAL_IMAGE_SIZE, EvalRequest
    from vjepa_robot_client.trainer import _eval_request

    assert _eval_request(episodes=5) == {"episodes": 5}
    assert EvalRequest().image_size is None and DEFAULT_EVAL_IMAGE_SIZE == 256
    assert _eval_request(policy="random")["policy"] == "random"


def test_a_restarted_trainer_reports_interrupted_never_running(tmp_path):
    from fastapi.testclient import TestClient

    runs = RunStore(tmp_path / "runs")
    handle = runs.create("bc", {"dataset": "d", "features": "state"})
    handle.update(status="running")
    eval_handle = runs.create("baseline", {"policy": "random", "task": "easy"})
    eval_id = eval_handle.add_evaluation({"episodes": 3})
    app = create_trainer_app(TrainerSettings(store=str(tmp_path / "store"), runs=str(tmp_path / "runs")))
    with TestClient(app) as c:  # lifespan start = a trainer (re)start
        run = c.get(f"/runs/{handle.run_id}").json()
        assert run["status"] == "interrupted" and "resume" in run["error"]
        ev = c.get(f"/eval/{eval_handle.run_id}").json()
        assert ev["status"] == "interrupted" and ev["eval_id"] == eval_id


@pytest.mark.slow
def test_readme_quickstart_script_runs_against_the_services(stack):
    """The README's 15-line SDK script, unmodified, against real services on loopback (small sizes via env)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "quickstart.py"
    env = {
        **os.environ,
        "VJEPA_ROBOT_ENCODER_URL": stack["encoder"],
        "VJEPA_ROBOT_TRAINER_URL": stack["trainer"],
        "QUICKSTART_EPISODES": "3",
        "QUICKSTART_STEPS": "20",
    }
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bc succeeded" in proc.stdout and "success " in proc.stdout, proc.stdout
    assert proc.stdout.count("random-init stand-in") == 3, proc.stdout  # the tiny encoder, named on every result


@pytest.mark.slow
def test_async_trainer_client_against_the_real_service(stack):
    """The SDK's async twin end to end: dataset -> BC -> evaluation on the real trainer."""
    import asyncio

    from vjepa_robot_client import AsyncTrainerClient

    name = unique_name("async-ds")

    async def main():
        async with AsyncTrainerClient(stack["trainer"]) as tr:
            await tr.create_dataset(name, episodes=4, steps=40, image_size=0, workers=1)
            ds = await tr.wait_dataset(name, progress=False, poll_interval=0.3)
            assert ds.status.value == "ready"
            run = await tr.wait(await tr.train_bc(name, features="state", epochs=3), progress=False, poll_interval=0.3)
            assert run.status.value == "succeeded", run.error
            queued = await tr.evaluate(run.run_id, episodes=2, steps=30, parallel_envs=2, gif_episodes=0)
            result = await tr.wait_eval(run.run_id, queued.eval_id, progress=False, poll_interval=0.3)
            assert result.status.value == "succeeded" and len(result.episodes) == 2
            assert result.episodes[0].return_ >= 0

    asyncio.run(main())
