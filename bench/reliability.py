"""Issue 28's probes (items 1-4 and 6-11), re-run with counts: requests sent, 5xx, files outside the store
touched, processes left behind, and what each probe found.

    nice -n 10 python bench/reliability.py --json bench/results/reliability_28.json

Real parts: `vjepa-robot` CLI and `serve trainer` subprocesses on loopback, LanceDB on disk, dm_control rendering.
Everything lives in one temporary directory; every process started is ended by its pid. Bounded: about 2-4 minutes
(the SIGTERM probe waits at most 150 s). The code measured is whatever `vjepa_robot`/`services` import resolves to
(PYTHONPATH first), so the same script measures an older checkout too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # appended: a PYTHONPATH checkout wins
sys.path.append(str(HERE.parent / "clients"))
sys.path.append(str(HERE.parent / "tests"))

import httpx  # noqa: E402
import psutil  # noqa: E402

ENV = {**os.environ, "VJEPA_ROBOT_TORCH_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


class Counts:
    def __init__(self):
        self.requests = 0
        self.server_errors = 0
        self.procs: list[subprocess.Popen] = []

    def http(self, method: str, url: str, **kw) -> httpx.Response | None:
        self.requests += 1
        try:
            r = httpx.request(method, url, timeout=30, **kw)
        except httpx.HTTPError:
            return None
        if r.status_code >= 500:
            self.server_errors += 1
        return r


from vjepa_robot.harness import free_port  # noqa: E402  (the one free-port helper)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vjepa_robot.cli", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def serve(c: Counts, store: Path, port: int, encoder_url: str = "http://127.0.0.1:9") -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-m", "vjepa_robot.cli", "serve", "trainer", "--store", str(store), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "VJEPA_ROBOT_ENCODER_URL": encoder_url},
    )
    c.procs.append(p)
    return p


def healthy(c: Counts, p: subprocess.Popen, port: int, timeout: float = 90) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and p.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def touched(before: dict, after: dict) -> int:
    return sum(1 for k, v in before.items() if after.get(k) != v)


def left_behind(tmp: Path) -> int:
    """Processes still alive whose command line names the probe's directory (trainers, dataset workers)."""
    n = 0
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if str(tmp) in cmd and proc.pid != os.getpid() and proc.info["status"] != psutil.STATUS_ZOMBIE:
                n += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return n


def stop_all(c: Counts) -> None:
    for p in c.procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


# ----------------------------------------------------------------------------------------------------------------


def probe_export(tmp: Path, c: Counts) -> dict:
    from conftest import write_steps_dataset

    from services.common.store import Store

    store = Store(str(tmp / "store"))
    write_steps_dataset(store, "src", episodes=2, steps=10, image_size=32)
    victim = tmp / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("notes")
    (victim / "sub/code.py").write_text("print(1)")
    afile = tmp / "afile"
    afile.write_text("data")
    before = {**tree(victim), "afile": hashlib.sha256(afile.read_bytes()).hexdigest()}
    r1 = cli("datasets", "export", "src", "--format", "lerobot", str(victim), "--overwrite", "--store", store.uri)
    r2 = cli("datasets", "export", "src", "--format", "lerobot", str(afile), "--store", store.uri)
    after = {**tree(victim), "afile": hashlib.sha256(afile.read_bytes()).hexdigest() if afile.is_file() else None}
    return {
        "probe": "1 export --overwrite onto a user's directory; export onto a file",
        "commands": 2,
        "exit_codes": [r1.returncode, r2.returncode],
        "tracebacks": sum("Traceback" in r.stderr for r in (r1, r2)),
        "outside_files_touched": touched(before, after),
    }


def probe_import_overwrite(tmp: Path, c: Counts) -> dict:
    from conftest import write_steps_dataset

    from services.common.store import DatasetNotFound, Store
    from vjepa_robot_lab.data import lerobot as L

    store = Store(str(tmp / "store"))
    write_steps_dataset(store, "src", episodes=2, steps=10, image_size=32)
    write_steps_dataset(store, "keep", episodes=1, steps=10, image_size=16, seed=7)
    broken = tmp / "broken"
    L.export_lerobot(store, "src", broken)
    for p in (broken / "meta/episodes").rglob("*.parquet"):
        p.unlink()
    r = cli("datasets", "import", str(broken), "--name", "keep", "--overwrite", "--store", store.uri)
    try:
        kept = store.get_dataset_meta("keep")["status"] == "ready" and store.count_steps("keep") == 10
    except DatasetNotFound:
        kept = False
    return {
        "probe": "2 import --overwrite of an existing dataset from a broken source",
        "commands": 1,
        "exit_codes": [r.returncode],
        "datasets_lost": 0 if kept else 1,
    }


def probe_prefix(tmp: Path, c: Counts) -> dict:
    import numpy as np
    from conftest import write_steps_dataset

    from services.common.store import EmbeddingLineage, Store
    from vjepa_robot_lab.data.datasets import DatasetSpec, claim_dataset

    store = Store(str(tmp / "store"))
    lineage = EmbeddingLineage(encoder_id="enc", model="toy", preprocessing="none", dim=4)
    for name in ("col", "col__x"):
        write_steps_dataset(store, name, episodes=1, steps=10, image_size=16)
        store.append_embeddings(name, 0, np.arange(10), np.zeros((10, 4), np.float32), lineage)
    claim_dataset(DatasetSpec(name="col", episodes=1, steps=10, image_size=16), store, overwrite=True)
    left = store.embedding_progress("col__x", "enc").done
    return {
        "probe": "3 overwrite dataset col next to col__x (both embedded)",
        "embedding_rows_of_col__x_lost": 10 - left,
    }


def probe_two_trainers(tmp: Path, c: Counts) -> dict:
    from services.common.store import Store

    store_dir = tmp / "store"
    a_port, b_port = free_port(), free_port()
    a = serve(c, store_dir, a_port)
    out: dict = {"probe": "4 a second trainer on a store in use"}
    if not healthy(c, a, a_port):
        return {**out, "error": "trainer A did not start"}
    r = c.http("POST", f"http://127.0.0.1:{a_port}/train/sac", json={"features": "state", "total_steps": 200_000})
    run_id = r.json()["run_id"] if r is not None and r.status_code == 202 else None
    time.sleep(3)
    t0 = time.monotonic()
    b = serve(c, store_dir, b_port)
    b_up = healthy(c, b, b_port, timeout=60)
    out["second_trainer"] = "serving" if b_up else f"exit {b.wait(timeout=30)}"
    out["second_trainer_s"] = round(time.monotonic() - t0, 1)
    err = "" if b_up else (b.stderr.read() if b.stderr else "")
    out["second_trainer_message"] = err.strip().splitlines()[-1][:300] if err.strip() else None
    status = c.http("GET", f"http://127.0.0.1:{a_port}/runs/{run_id}") if run_id else None
    out["live_run_on_A_after_B_started"] = status.json()["status"] if status is not None else None
    accepted, dup_rows = 0, 0
    body = {"episodes": 2, "steps": 10, "image_size": 16, "workers": 1}
    for k in range(5):  # the same POST to both at once
        name = f"race-{k}"
        answers = []

        def post(port, name=name, answers=answers):
            r = c.http("POST", f"http://127.0.0.1:{port}/datasets", json={**body, "name": name})
            answers.append(None if r is None else r.status_code)

        ts = [threading.Thread(target=post, args=(p,)) for p in (a_port, b_port)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        accepted += sum(s == 202 for s in answers) - 1 if 202 in answers else 0
    time.sleep(8)
    store = Store(str(store_dir))
    for k in range(5):
        dup_rows += max(0, store.count_steps(f"race-{k}") - 20)
    out.update(
        {
            "same_POST_to_both_x5_extra_202": accepted,
            "duplicated_step_rows": dup_rows,
        }
    )
    for p in (a, b):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in (a, b):
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    return out


def probe_import_outside(tmp: Path, c: Counts) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from services.common.store import DatasetNotFound, Store, encode_png

    secret = tmp / "secret.png"
    secret.write_bytes(encode_png(np.full((16, 16, 3), 200, np.uint8)))
    store = Store(str(tmp / "store"))
    imported = 0
    codes = []
    for case, path in (("dotdot", "../secret.png"), ("absolute", str(secret)), ("link", "link.png")):
        root = tmp / case
        (root / "meta/episodes/chunk-000").mkdir(parents=True)
        (root / "data/chunk-000").mkdir(parents=True)
        os.symlink(secret, root / "link.png")
        info = {
            "codebase_version": "v3.0",
            "fps": 50,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "features": {
                "observation.images.top": {"dtype": "image", "shape": [16, 16, 3]},
                "action": {"dtype": "float32", "shape": [2]},
            },
        }
        (root / "meta/info.json").write_text(json.dumps(info))
        img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        pq.write_table(
            pa.table(
                {
                    "observation.images.top": pa.array([{"bytes": None, "path": path}] * 10, img),
                    "action": pa.array([[0.0, 0.0]] * 10, pa.list_(pa.float32(), 2)),
                    "timestamp": pa.array(np.arange(10) / 50, pa.float32()),
                    "frame_index": pa.array(np.arange(10)),
                    "episode_index": pa.array(np.zeros(10, np.int64)),
                    "index": pa.array(np.arange(10)),
                }
            ),
            root / "data/chunk-000/file-000.parquet",
        )
        pq.write_table(
            pa.table({"episode_index": [0], "length": [10], "dataset_from_index": [0], "dataset_to_index": [10]}),
            root / "meta/episodes/chunk-000/file-000.parquet",
        )
        codes.append(cli("datasets", "import", str(root), "--name", case, "--store", store.uri).returncode)
        try:
            store.get_dataset_meta(case)
            imported += 1
        except DatasetNotFound:
            pass
    return {
        "probe": "6 import of datasets whose image paths lead outside (.., absolute, a link)",
        "commands": 3,
        "exit_codes": codes,
        "outside_files_read_into_the_store": imported,
    }


def probe_threads(tmp: Path, c: Counts) -> dict:
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset

    store = Store(str(tmp / "store"))
    failures = []

    def job(name):
        try:
            create_dataset(
                DatasetSpec(name=name, episodes=1, steps=10, image_size=16), store, workers=1, progress=False
            )
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    for name in ("t1", "t2", "t3", "t4"):
        t = threading.Thread(target=job, args=(name,))
        t.start()
        t.join(timeout=120)
    return {"probe": "7 four single-worker datasets, each on a new thread", "failed": len(failures), "errors": failures}


def probe_validation_and_resume(tmp: Path, c: Counts) -> dict:
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset, generate_episode

    store_dir = tmp / "store"
    store = Store(str(store_dir))
    spec = DatasetSpec(name="half", episodes=2, steps=10, image_size=16)

    def first_only(s, episodes):
        yield [generate_episode(s, episodes[0])]
        raise KeyboardInterrupt

    try:
        create_dataset(spec, store, generate=first_only, progress=False)
    except KeyboardInterrupt:
        pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    meta = {k: v for k, v in store.get_dataset_meta("half").items() if k not in ("name", "status", "updated_at")}
    meta.update(owner_pid=dead.pid, owner_host=os.uname().nodename, owner_token=f"{dead.pid}-1.0-x")
    store.put_dataset_meta("half", "running", meta)  # a generation whose trainer crashed

    port = free_port()
    p = serve(c, store_dir, port)
    out: dict = {"probe": "11 loose input, and a dataset interrupted by a crash"}
    if not healthy(c, p, port):
        return {**out, "error": "trainer did not start"}
    base = f"http://127.0.0.1:{port}"
    body = {"name": "v", "episodes": 1, "steps": 10, "image_size": 16, "workers": 1}
    loose = [
        ("POST", "/datasets", {**body, "name": "nl\n"}),
        ("GET", "/datasets/nl%0A", None),
        ("GET", "/runs/bc-1234%0A", None),
        ("POST", "/datasets", {**body, "overwrite": "yes"}),
        ("POST", "/datasets", {**body, "overwrite": 1}),
        ("POST", "/train/sac", {"features": "state", "checkpoint_replay": "no"}),
        ("POST", "/train/sac", {"features": "state", "buffer_size": 10**15, "total_steps": 1000}),
    ]
    accepted = 0
    for method, path, js in loose:
        r = c.http(method, base + path, json=js)
        accepted += r is not None and r.status_code < 400
    got = c.http("GET", f"{base}/datasets/half")
    post = c.http("POST", f"{base}/datasets", json={**body, "name": "half", "episodes": 2})
    resume = c.http("POST", f"{base}/datasets", json={**body, "name": "half", "episodes": 2, "resume": True})
    final = None
    if resume is not None and resume.status_code == 202:
        for _ in range(300):
            final = c.http("GET", f"{base}/datasets/half").json()
            if final["status"] != "running":
                break
            time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    return {
        **out,
        "loose_requests": len(loose),
        "loose_requests_accepted": accepted,
        "interrupted_dataset_GET": got.json().get("status") if got is not None else None,
        "interrupted_dataset_POST": post.status_code if post is not None else None,
        "interrupted_dataset_POST_detail": (post.json().get("detail") or "")[:200] if post is not None else None,
        "resume_over_HTTP": resume.status_code if resume is not None else None,
        "after_resume": None if final is None else f"{final['status']}, {final['episodes_done']} episodes",
        "rows_after_resume": Store(str(store_dir)).count_steps("half"),
    }


def probe_sigterm(tmp: Path, c: Counts) -> dict:
    store_dir = tmp / "store"
    port = free_port()
    p = serve(c, store_dir, port, encoder_url=f"http://127.0.0.1:{free_port()}")  # the encoder is gone
    out: dict = {"probe": "11 SIGTERM to a trainer whose encoder is gone, during a vjepa2 job"}
    if not healthy(c, p, port):
        return {**out, "error": "trainer did not start"}
    r = c.http("POST", f"http://127.0.0.1:{port}/train/sac", json={"features": "vjepa2", "total_steps": 1000})
    run_id = r.json()["run_id"]
    time.sleep(3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=150)
        out["exit_s"] = round(time.monotonic() - t0, 1)
    except subprocess.TimeoutExpired:
        out["exit_s"] = "> 150"
    record = json.loads((store_dir / "runs" / run_id / "run.json").read_text())
    return {**out, "run_status": record["status"], "error": (record.get("error") or "")[:160]}


# ---- the encoder (items 8 and 9) and processes left behind (item 10) ------------------------------------------------


def serve_encoder(c: Counts, store: Path, port: int, token: str | None = None) -> subprocess.Popen:
    env = {**ENV, **({"VJEPA_ROBOT_TOKEN": token} if token else {})}
    p = subprocess.Popen(
        [sys.executable, "-m", "vjepa_robot.cli", "serve", "encoder", "--preset", "tiny"]
        + ["--store", str(store), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    c.procs.append(p)
    return p


def _npy(arr) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def probe_encoder_poolings(tmp: Path, c: Counts) -> dict:
    """Item 8: 20 distinct grid poolings, then each again with dtype sent: none may be refused for good."""
    import numpy as np

    port = free_port()
    p = serve_encoder(c, tmp / "store", port)
    out: dict = {"probe": "8 twenty distinct grid poolings on /encode (and each again with dtype sent)"}
    if not healthy(c, p, port, timeout=240):
        return {**out, "error": "encoder did not start"}
    body = _npy(np.zeros((1, 8, 32, 32, 3), np.uint8))
    codes: dict[int, int] = {}
    specs = [(g, time_) for time_ in ("mean", "last") for g in range(1, 11)]
    for g, time_ in specs + [(g, t_) for g, t_ in specs[:5]]:
        for extra in ("", "&dtype=float16"):
            r = c.http(
                "POST",
                f"http://127.0.0.1:{port}/encode?pool=grid&grid_size={g}&time={time_}{extra}",
                content=body,
                headers={"Content-Type": "application/x-npy"},
            )
            key = r.status_code if r is not None else 0
            codes[key] = codes.get(key, 0) + 1
    p.terminate()  # the probe's own encoder: stopped before processes are counted
    p.wait(timeout=30)
    return {**out, "status_codes": codes}


def probe_encoder_bodies(tmp: Path, c: Counts) -> dict:
    """Item 9: an oversized JSON body, NaN in JSON (then the same keep-alive connection), a hostile .npy header,
    and the `detail` of an auth refusal."""
    import numpy as np

    port = free_port()
    p = serve_encoder(c, tmp / "store", port, token="s3cret")
    out: dict = {"probe": "9 encoder bodies: 16 MB JSON, NaN, |V0 and overflowing .npy headers, detail types"}
    if not healthy(c, p, port, timeout=240):
        return {**out, "error": "encoder did not start"}
    auth = {"Authorization": "Bearer s3cret"}
    base = f"http://127.0.0.1:{port}"
    big = c.http("POST", f"{base}/streams", content=b'{"envs": ' + b"1" * (16 << 20) + b"}",
                 headers={**auth, "Content-Type": "application/json"})  # fmt: skip
    out["big_json"] = [big.status_code, len(big.content)] if big is not None else None
    with httpx.Client(timeout=30) as client:  # one keep-alive connection
        c.requests += 2
        nan = client.post(
            f"{base}/streams", content=b'{"envs": NaN}', headers={**auth, "Content-Type": "application/json"}
        )
        after = client.get(f"{base}/info", headers=auth)
        c.server_errors += (nan.status_code >= 500) + (after.status_code >= 500)
    out["nan_then_next"] = [nan.status_code, after.status_code]
    good = _npy(np.zeros((1, 8, 16, 16, 3), np.uint8))
    void = good.replace(b"'|u1'", b"'|V0'")
    huge = good.replace(b"(1, 8, 16, 16, 3)", b"(99999999999, 99999999, 16, 16, 3)")
    for name, body in (("void_dtype", void), ("overflowing_shape", huge)):
        r = c.http("POST", f"{base}/encode", content=body, headers={**auth, "Content-Type": "application/x-npy"})
        out[name] = r.status_code if r is not None else None
    details = []
    for method, path, headers in (("GET", "/info", {}), ("GET", "/nope", auth), ("POST", "/encode", auth)):
        r = c.http(method, f"{base}{path}", headers=headers)
        if r is not None and r.status_code >= 400:
            details.append(type(r.json().get("detail")).__name__)
    out["detail_types"] = sorted(set(details))
    p.terminate()  # the probe's own encoder: stopped before processes are counted
    p.wait(timeout=30)
    return out


def probe_kill_trainer_mid_generation(tmp: Path, c: Counts) -> dict:
    """Item 10: kill -9 of a trainer while its 2 dataset workers render: how many of its children outlive it."""
    port = free_port()
    p = serve(c, tmp / "store", port)
    out: dict = {"probe": "10 kill -9 of a trainer during a 2-worker dataset generation"}
    if not healthy(c, p, port):
        return {**out, "error": "trainer did not start"}
    body = {"name": "gen", "episodes": 40, "steps": 100, "image_size": 32, "workers": 2}
    c.http("POST", f"http://127.0.0.1:{port}/datasets", json=body)
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(children) < 2:
        children = psutil.Process(p.pid).children(recursive=True)
        time.sleep(0.5)
    out["children_before"] = len(children)
    p.kill()
    p.wait(timeout=30)
    time.sleep(5)
    out["children_alive_5s_after"] = sum(
        1 for ch in children if ch.is_running() and ch.status() != psutil.STATUS_ZOMBIE
    )
    for ch in children:  # the probe's own clean-up
        try:
            ch.kill()
        except psutil.NoSuchProcess:
            pass
    return out


def probe_sigint_cli(tmp: Path, c: Counts) -> dict:
    """Item 10: Ctrl-C (SIGINT) to `vjepa-robot datasets create` mid-generation: exit time, children left, and the
    dataset's status afterwards."""
    store = tmp / "store"
    p = subprocess.Popen(
        [sys.executable, "-m", "vjepa_robot.cli", "datasets", "create", "gen", "--episodes", "40", "--steps", "100"]
        + ["--image-size", "32", "--workers", "2", "--store", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    c.procs.append(p)
    out: dict = {"probe": "10 SIGINT to `datasets create` (local, 2 workers) mid-generation"}
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(children) < 2 and p.poll() is None:
        children = psutil.Process(p.pid).children(recursive=True)
        time.sleep(0.5)
    time.sleep(3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
        out["exit_s"], out["exit_code"] = round(time.monotonic() - t0, 1), p.returncode
    except subprocess.TimeoutExpired:
        out["exit_s"] = "> 60"
    time.sleep(2)
    out["children_alive"] = sum(1 for ch in children if ch.is_running() and ch.status() != psutil.STATUS_ZOMBIE)
    show = cli("datasets", "show", "gen", "--json", "--store", str(store))
    try:
        out["dataset_status"] = json.loads(show.stdout)["status"]
    except (ValueError, KeyError):
        out["dataset_status"] = (show.stdout + show.stderr)[-160:]
    return out


def probe_bakeoff_urls(tmp: Path, c: Counts) -> dict:
    """Item 5: POST /bakeoff naming an encoder URL the trainer was not configured with, with a token set: 422, and
    the URL's listener hears nothing (no request, so no token)."""
    import http.server

    hits: list[str] = []

    class Listener(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path + " " + str(self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"secret": "echoed?"}')

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vjepa_robot.cli",
            "serve",
            "trainer",
            "--store",
            str(tmp / "store"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**ENV, "VJEPA_ROBOT_ENCODER_URL": "http://127.0.0.1:9", "VJEPA_ROBOT_TOKEN": "s3cret"},
    )
    c.procs.append(p)
    out: dict = {"probe": "5 POST /bakeoff with an encoder URL the trainer was not configured with"}
    try:
        if not healthy(c, p, port):
            return {**out, "error": "trainer did not start"}
        url = f"http://127.0.0.1:{server.server_address[1]}/anything?x=1#"
        r = c.http("POST", f"http://127.0.0.1:{port}/bakeoff", json={"encoders": [url]},
                   headers={"Authorization": "Bearer s3cret"})  # fmt: skip
        out["status"] = r.status_code if r is not None else None
        out["echoes_remote_body"] = bool(r is not None and "echoed?" in r.text)
        time.sleep(1)
        out["listener_requests"] = len(hits)
    finally:
        server.shutdown()
        p.terminate()
        p.wait(timeout=30)
    return out


PROBES = [
    probe_export,
    probe_import_overwrite,
    probe_prefix,
    probe_import_outside,
    probe_threads,
    probe_two_trainers,
    probe_validation_and_resume,
    probe_sigterm,
    probe_encoder_poolings,
    probe_encoder_bodies,
    probe_kill_trainer_mid_generation,
    probe_sigint_cli,
    probe_bakeoff_urls,
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", default=None, help="run the probes whose function name contains this")
    args = ap.parse_args()
    import services

    results = {"code": str(Path(services.__file__).resolve().parents[1]), "probes": []}
    for fn in PROBES:
        if args.only and args.only not in fn.__name__:
            continue
        c = Counts()
        with tempfile.TemporaryDirectory(prefix="rel28-") as d:
            tmp = Path(d)
            t0 = time.monotonic()
            try:
                res = fn(tmp, c)
            except Exception as exc:
                res = {"probe": fn.__name__, "error": f"{type(exc).__name__}: {exc}"[:300]}
            time.sleep(1)
            res.update(
                requests=c.requests,
                server_errors_5xx=c.server_errors,
                processes_left=left_behind(tmp),
                seconds=round(time.monotonic() - t0, 1),
            )
            stop_all(c)
            for proc in psutil.process_iter(["pid", "cmdline"]):  # anything left, by pid
                try:
                    if str(tmp) in " ".join(proc.info["cmdline"] or []) and proc.pid != os.getpid():
                        proc.kill()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        print(json.dumps(res), flush=True)
        results["probes"].append(res)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
