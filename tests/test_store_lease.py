"""One trainer per store (issue 28 item 4) and a prompt, honest shutdown (item 11).

A second trainer on a store in use exits with code 2 naming the store and the live trainer; a dead trainer's store is
taken over; a trainer starting records what dead processes left (runs interrupted, datasets failed, bake-offs
interrupted) and never touches a live process's work; SIGTERM's shutdown cuts the encoder retries short and records
`interrupted`. Real parts: `vjepa-robot serve trainer` processes (a process boundary is the point), the trainer app
under TestClient (its lifespan), LanceDB on disk, psutil's process table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _servers import free_port

from services.common.lease import LEASE_FILE, StoreInUse
from services.common.owner import HOST, start_time
from services.common.store import Store
from vjepa_robot_lab.records.runs import RunStore


def _serve(store: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vjepa_robot.cli", "serve", "trainer", "--store", str(store), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VJEPA_ROBOT_ENCODER_URL": "http://127.0.0.1:9", "VJEPA_ROBOT_TORCH_THREADS": "1"},
    )


def _wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 90.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("trainer did not start")


def test_a_second_trainer_on_a_store_in_use_exits_2_naming_the_store_and_the_live_trainer(tmp_path):
    store = tmp_path / "store"
    a_port, b_port = free_port(), free_port()
    a = _serve(store, a_port)
    procs = [a]
    try:
        _wait_healthy(a, a_port)
        lease = json.loads((store / LEASE_FILE).read_text())
        assert lease["pid"] == a.pid and lease["url"].endswith(f":{a_port}")

        b = _serve(store, b_port)
        procs.append(b)
        _, err = b.communicate(timeout=90)
        assert b.returncode == 2, err
        assert f"store {store} is in use by a live trainer: pid {a.pid}" in err and "Traceback" not in err
        assert a.poll() is None and httpx.get(f"http://127.0.0.1:{a_port}/healthz").status_code == 200

        a.send_signal(signal.SIGTERM)
        a.wait(timeout=60)
        assert not (store / LEASE_FILE).exists()  # given back on a clean stop
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_dead_trainers_lease_is_taken_over(tmp_path):
    from fastapi.testclient import TestClient

    from services.trainer.app import TrainerSettings, create_app

    store = tmp_path / "store"
    store.mkdir()
    (store / LEASE_FILE).write_text(json.dumps({**_dead_owner(), "heartbeat_at": "2026-01-01T00:00:00+00:00"}))
    with TestClient(create_app(TrainerSettings(store=str(store), runs=str(tmp_path / "runs")))):
        assert json.loads((store / LEASE_FILE).read_text())["pid"] == os.getpid()
    assert not (store / LEASE_FILE).exists()


@pytest.fixture
def live_process():
    """Another live process on this host (stands for a CLI job or another trainer)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    time.sleep(0.3)
    owner = {"pid": p.pid, "host": HOST, "token": f"{p.pid}-{start_time(p.pid)}-feedc0ffee00"}
    yield owner
    p.kill()
    p.wait()


def _dead_owner() -> dict:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return {"pid": p.pid, "host": HOST, "token": f"{p.pid}-1.0-deadbeef0000"}


def _set(path: Path, **fields) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_trainer_start_fixes_dead_owners_work_once_and_never_a_live_owners(tmp_path, live_process):
    from fastapi.testclient import TestClient

    from services.trainer.app import TrainerSettings, create_app
    from vjepa_robot_client.contract import BakeoffRecord

    runs_dir, store_dir = tmp_path / "runs", tmp_path / "store"
    runs, store = RunStore(runs_dir), Store(str(store_dir))
    dead = _dead_owner()
    ids = {}
    for key, owner in (("live", live_process), ("dead", dead), ("legacy", None)):
        h = runs.create("bc", {"dataset": "d", "features": "state"})
        _set(h.dir / "run.json", status="running", owner=owner)
        ids[key] = h.run_id
    base = {"expert": "jacobian", "task": "easy", "episodes": 2, "steps": 10, "seed": 0, "image_size": 16}
    for name, owner in (("ds-live", live_process), ("ds-dead", dead)):
        own = {"owner_pid": owner["pid"], "owner_host": owner["host"], "owner_token": owner["token"]}
        store.put_dataset_meta(name, "running", {**base, **own})
    for bid, owner in (("bo-live", live_process), ("bo-dead", dead)):
        d = runs_dir / "bakeoffs" / bid
        d.mkdir(parents=True)
        rec = BakeoffRecord(bakeoff_id=bid, status="running").model_dump(mode="json")
        (d / "bakeoff.json").write_text(json.dumps({**rec, "owner": owner}))

    def status(run_key):
        return json.loads((runs_dir / ids[run_key] / "run.json").read_text())["status"]

    def bakeoff_status(bid):
        return json.loads((runs_dir / "bakeoffs" / bid / "bakeoff.json").read_text())["status"]

    app = create_app(TrainerSettings(store=str(store_dir), runs=str(runs_dir), encoder_url="http://127.0.0.1:9"))
    with TestClient(app) as c:  # trainer start; the checks below read the files, not the routes (nothing on read)
        assert status("live") == "running"
        assert status("dead") == "interrupted" and status("legacy") == "interrupted"
        assert store.get_dataset_meta("ds-live")["status"] == "running"
        failed = store.get_dataset_meta("ds-dead")
        assert failed["status"] == "failed" and "resume" in failed["error"]
        assert bakeoff_status("bo-live") == "running" and bakeoff_status("bo-dead") == "interrupted"
        assert c.get("/bakeoff/bo-live").json()["status"] == "running"  # and a read does not decide it either
        assert bakeoff_status("bo-live") == "running"
    assert status("live") == "running"  # nor at shutdown: it is not this trainer's

    # a lease held by a live process: the trainer refuses to start, naming the store and the holder
    (store_dir / LEASE_FILE).write_text(
        json.dumps({**live_process, "url": "http://127.0.0.1:1234", "heartbeat_at": "2026-01-01T00:00:00+00:00"})
    )
    app = create_app(TrainerSettings(store=str(store_dir), runs=str(runs_dir)))
    with pytest.raises(StoreInUse, match=f"pid {live_process['pid']}"):
        with TestClient(app):
            pass
    assert status("live") == "running"


def test_shutdown_cuts_encoder_retries_short_and_records_interrupted(tmp_path):
    """The encoder is gone: a vjepa2 job sits in the SDK's retries (40-80 s). The trainer's shutdown (what SIGTERM
    runs) ends it within seconds, and the run reads `interrupted` (resumable), not `failed`."""
    from fastapi.testclient import TestClient

    from services.trainer.app import TrainerSettings, create_app

    dead_port = free_port()  # nothing listens: every connection is refused
    app = create_app(
        TrainerSettings(
            store=str(tmp_path / "store"), runs=str(tmp_path / "runs"), encoder_url=f"http://127.0.0.1:{dead_port}"
        )
    )
    client = TestClient(app)
    with client as c:
        r = c.post("/train/sac", json={"features": "vjepa2", "total_steps": 1000, "image_size": 64})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        for _ in range(100):
            if c.get(f"/runs/{run_id}").json()["status"] == "running":
                break
            time.sleep(0.05)
        time.sleep(1.5)  # inside the retries now
        t0 = time.monotonic()
    took = time.monotonic() - t0
    record = RunStore(tmp_path / "runs").get(run_id)
    assert took < 10, f"shutdown took {took:.1f} s"
    assert record.status.value == "interrupted", record.error
    assert "not retried: the caller is stopping" in (record.error or "")
