"""Nothing lost, no one in (issue 28): overwrites touch only what the tool wrote, imports read only their own
directory, embeddings tables never cross datasets, single-worker generation works from any job thread, and
validation is strict (full matches, strict booleans, a replay buffer that fits in memory, a resume over HTTP).

Real parts throughout: LanceDB on disk, PyAV/FFmpeg, dm_control rendering, the CLI (typer's CliRunner) and the
trainer app (FastAPI's TestClient runs its lifespan). Tiny sizes: 1-2 episodes of 10 steps at 16-32 px.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_steps_dataset

from services.common.store import DatasetNotFound, EmbeddingLineage, Store, encode_png

av = pytest.importorskip("av")

from vjepa_robot_lab.data import lerobot as L  # noqa: E402


def _cli(*args: str):
    from typer.testing import CliRunner

    from vjepa_robot.cli import app

    return CliRunner().invoke(app, list(args))


def _tree(root) -> dict[str, bytes]:
    """Every file under root with its bytes (what 'touching nothing' compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def src_store(tmp_path):
    store = Store(str(tmp_path / "store"))
    write_steps_dataset(store, "src", episodes=2, steps=10, image_size=32)
    return store


# ----------------------------------------------------------------------------------------------------------------
# 1. export --overwrite replaces only a previous export; a file is a clear error
# ----------------------------------------------------------------------------------------------------------------


def test_export_overwrite_never_deletes_what_the_tool_did_not_write(src_store, tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("my notes")
    (victim / "sub/code.py").write_text("print('mine')")
    (tmp_path / "victim.partial").mkdir()  # a user's directory that happens to carry the old scratch name
    (tmp_path / "victim.partial/keep.txt").write_text("mine too")
    before = _tree(tmp_path)

    r = _cli("datasets", "export", "src", "--format", "lerobot", str(victim), "--overwrite", "--store", src_store.uri)
    assert r.exit_code == 2, r.output
    assert "not a previous export" in r.output and "Traceback" not in r.output
    after = {k: v for k, v in _tree(tmp_path).items() if not k.startswith("store/")}
    assert after == {k: v for k, v in before.items() if not k.startswith("store/")}  # nothing touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "victim", "victim.partial"]

    # a path that is a file: one line, exit 2, the file untouched
    f = tmp_path / "afile"
    f.write_text("data")
    for extra in ([], ["--overwrite"]):
        r = _cli("datasets", "export", "src", "--format", "lerobot", str(f), *extra, "--store", src_store.uri)
        assert r.exit_code == 2 and "is a file" in r.output and "Traceback" not in r.output, r.output
        assert f.read_text() == "data"


def test_export_overwrite_replaces_a_previous_export_but_not_one_holding_other_files(src_store, tmp_path):
    out = tmp_path / "out"
    L.export_lerobot(src_store, "src", out)
    assert (out / L.EXPORT_MARKER).is_file() and oct(out.stat().st_mode & 0o777) != oct(0o700)
    first = _tree(out)
    info = L.export_lerobot(src_store, "src", out, overwrite=True)  # ours: replaced
    assert info["total_frames"] == 20 and _tree(out).keys() == first.keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]  # no scratch directory left behind

    (out / "notes.txt").write_text("added later by hand")
    with pytest.raises(L.ExportRefused, match="notes.txt"):
        L.export_lerobot(src_store, "src", out, overwrite=True)
    assert (out / "notes.txt").read_text() == "added later by hand" and (out / "meta/info.json").is_file()


# ----------------------------------------------------------------------------------------------------------------
# 2. import --overwrite writes the new dataset completely before the old one goes
# ----------------------------------------------------------------------------------------------------------------


def test_import_overwrite_keeps_the_existing_dataset_when_the_source_is_broken(src_store, tmp_path):
    write_steps_dataset(src_store, "keep", episodes=1, steps=10, image_size=16, seed=7)
    keep_frames = src_store.read_steps("keep", ["frame"]).column("frame").to_pylist()
    good = tmp_path / "good"
    L.export_lerobot(src_store, "src", good)

    no_episodes = tmp_path / "no-episodes"
    L.export_lerobot(src_store, "src", no_episodes)
    for p in (no_episodes / "meta/episodes").rglob("*.parquet"):
        p.unlink()
    r = _cli("datasets", "import", str(no_episodes), "--name", "keep", "--overwrite", "--store", src_store.uri)
    assert r.exit_code == 2 and "meta/episodes" in r.output, r.output

    truncated = tmp_path / "truncated"  # fails part-way, after episodes were read
    L.export_lerobot(src_store, "src", truncated)
    video = next((truncated / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    with pytest.raises(Exception):  # noqa: B017 -- whichever decoder error; the point is what is left
        L.import_lerobot(src_store, truncated, name="keep", overwrite=True)

    meta = src_store.get_dataset_meta("keep")
    assert meta["status"] == "ready" and meta["seed"] == 7
    assert src_store.read_steps("keep", ["frame"]).column("frame").to_pylist() == keep_frames
    assert [m["name"] for m in src_store.list_datasets()] == ["keep", "src"]  # no temporary dataset left
    assert not any("importing" in t for t in src_store.table_names())

    meta = L.import_lerobot(src_store, good, name="keep", overwrite=True)  # a good source replaces it
    assert meta["status"] == "ready" and meta["episodes_done"] == 2 and meta["name"] == "keep"
    t = src_store.read_steps("keep", ["frame", "dataset"])
    assert t.num_rows == 20 and set(t.column("dataset").to_pylist()) == {"keep"}
    assert t.column("frame").to_pylist() == src_store.read_steps("src", ["frame"]).column("frame").to_pylist()
    assert not any("importing" in t for t in src_store.table_names())
    assert [m["name"] for m in src_store.list_datasets()] == ["keep", "src"]


# ----------------------------------------------------------------------------------------------------------------
# 3. embeddings tables never cross datasets whose names extend each other with '__'
# ----------------------------------------------------------------------------------------------------------------


def _embed(store: Store, dataset: str, encoder_id: str) -> None:
    lineage = EmbeddingLineage(encoder_id=encoder_id, model="toy", preprocessing="none", dim=4)
    for ep in sorted(store.episodes_present(dataset)):
        steps = np.arange(10)
        store.append_embeddings(dataset, ep, steps, np.full((10, 4), ep, np.float32), lineage)


def test_overwriting_a_dataset_keeps_the_embeddings_of_a_dataset_named_like_it(tmp_store):
    from vjepa_robot_lab.data.datasets import DatasetSpec, claim_dataset

    write_steps_dataset(tmp_store, "col", episodes=1, steps=10, image_size=16)
    write_steps_dataset(tmp_store, "col__x", episodes=2, steps=10, image_size=16)
    _embed(tmp_store, "col", "enc")
    _embed(tmp_store, "col__x", "enc")
    assert tmp_store.embedding_progress("col__x", "enc").complete

    claim_dataset(DatasetSpec(name="col", episodes=1, steps=10, image_size=16), tmp_store, overwrite=True)
    assert not tmp_store.has_table("emb__col__enc")  # col's own embeddings went with it
    progress = tmp_store.embedding_progress("col__x", "enc")
    assert progress.complete and progress.done == 20  # the other dataset's are intact
    assert tmp_store.read_embeddings("col__x", "enc")[2].shape == (20, 4)

    # the one name two (dataset, encoder) pairs share is owned by the first; the second is refused, never mixed in
    write_steps_dataset(tmp_store, "col", episodes=1, steps=10, image_size=16)
    with pytest.raises(ValueError, match="collide"):
        _embed(tmp_store, "col", "x__enc")  # emb__col__x__enc, already col__x's (encoder enc)
    assert tmp_store.embedding_progress("col", "x__enc").done == 0
    assert tmp_store.embedding_progress("col__x", "enc").done == 20
    tmp_store.drop_dataset("col")
    assert tmp_store.embedding_progress("col__x", "enc").done == 20


# ----------------------------------------------------------------------------------------------------------------
# 6. import reads nothing outside the dataset directory
# ----------------------------------------------------------------------------------------------------------------


def _image_dataset(root, image_value) -> None:
    """A minimal LeRobot v3.0 dataset with an `image` camera: one episode of 10 frames, every row's image given."""
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    info = {
        "codebase_version": "v3.0",
        "fps": 50,
        "data_path": L.DATA_PATH,
        "features": {
            "observation.images.top": {"dtype": "image", "shape": [16, 16, 3]},
            "action": {"dtype": "float32", "shape": [2]},
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    n = 10
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(
        pa.table(
            {
                "observation.images.top": pa.array([image_value] * n, image_type),
                "action": pa.array([[0.0, 0.0]] * n, pa.list_(pa.float32(), 2)),
                "timestamp": pa.array(np.arange(n) / 50, pa.float32()),
                "frame_index": pa.array(np.arange(n)),
                "episode_index": pa.array(np.zeros(n, np.int64)),
                "index": pa.array(np.arange(n)),
            }
        ),
        root / "data/chunk-000/file-000.parquet",
    )
    pq.write_table(
        pa.table({"episode_index": [0], "length": [n], "dataset_from_index": [0], "dataset_to_index": [n]}),
        root / "meta/episodes/chunk-000/file-000.parquet",
    )


def test_import_refuses_paths_that_resolve_outside_the_dataset_directory(tmp_store, tmp_path):
    png = encode_png(np.full((16, 16, 3), 200, np.uint8))
    secret = tmp_path / "secret.png"
    secret.write_bytes(png)

    inside = tmp_path / "inside"
    _image_dataset(inside, {"bytes": None, "path": "frames/f.png"})
    (inside / "frames").mkdir()
    (inside / "frames/f.png").write_bytes(png)
    meta = L.import_lerobot(tmp_store, inside, name="inside")  # the format itself is fine: an inside path imports
    assert meta["status"] == "ready" and meta["episodes_done"] == 1

    cases = {
        "dotdot": {"bytes": None, "path": "../secret.png"},
        "absolute": {"bytes": None, "path": str(secret)},
        "link": {"bytes": None, "path": "frames/link.png"},
    }
    for name, value in cases.items():
        root = tmp_path / name
        _image_dataset(root, value)
        (root / "frames").mkdir()
        os.symlink(secret, root / "frames/link.png")
        r = _cli("datasets", "import", str(root), "--name", name, "--store", tmp_store.uri)
        assert r.exit_code == 2 and "outside the dataset directory" in r.output, (name, r.output)
        with pytest.raises(DatasetNotFound):
            tmp_store.get_dataset_meta(name)

    # a video path template leading out, and a data directory that is a link out
    out = tmp_path / "export"
    write_steps_dataset(tmp_store, "v", episodes=1, steps=10, image_size=16)
    L.export_lerobot(tmp_store, "v", out)
    info = json.loads((out / "meta/info.json").read_text())
    (out / "meta/info.json").write_text(json.dumps({**info, "video_path": "../elsewhere/{video_key}.mp4"}))
    with pytest.raises(L.LeRobotFormatError, match="outside the dataset directory"):
        L.import_lerobot(tmp_store, out, name="v2")
    (out / "meta/info.json").write_text(json.dumps(info))
    (out / "data").rename(tmp_path / "data-elsewhere")
    os.symlink(tmp_path / "data-elsewhere", out / "data")
    with pytest.raises(L.LeRobotFormatError, match="outside the dataset directory"):
        L.import_lerobot(tmp_store, out, name="v2")


# ----------------------------------------------------------------------------------------------------------------
# 7. single-worker generation from two job threads
# ----------------------------------------------------------------------------------------------------------------


def test_single_worker_datasets_on_two_threads(tmp_store):
    """The trainer's job threads each run a `workers: 1` dataset in process: the rendering context of one thread
    must never be reused from another (a module-wide env cache failed with 'already current on job_0')."""
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset

    errors, names = [], ["one", "two"]

    def job(name):
        try:
            create_dataset(
                DatasetSpec(name=name, episodes=1, steps=10, image_size=16), tmp_store, workers=1, progress=False
            )
        except BaseException as exc:  # recorded for the assertion below
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    for name in names:  # one after the other, each on its own thread: the second reuses nothing of the first
        t = threading.Thread(target=job, args=(name,), name=f"job_{name}")
        t.start()
        t.join(timeout=120)
    assert errors == []
    for name in names:
        assert tmp_store.get_dataset_meta(name)["status"] == "ready"
    f1, f2 = (tmp_store.read_steps(n, ["frame"]).column("frame").to_pylist() for n in names)
    assert f1 == f2  # same spec, same seed: the same frames


# ----------------------------------------------------------------------------------------------------------------
# 11. full matches, strict booleans, a buffer that fits, and one story about an interrupted dataset
# ----------------------------------------------------------------------------------------------------------------


def test_names_and_ids_with_a_trailing_newline_are_refused():
    from vjepa_robot_client.contract import CreateDatasetRequest, validate_name, validate_run_id

    for bad in ("abc\n", "abc\n\n", "\nabc"):
        with pytest.raises(ValueError):
            validate_name(bad)
    with pytest.raises(ValueError):
        validate_run_id("bc-1234\n")
    with pytest.raises(ValueError):
        CreateDatasetRequest(name="ds\n")
    assert validate_name("ok-name_1") == "ok-name_1"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def trainer(tmp_path):
    from fastapi.testclient import TestClient

    from services.trainer.app import TrainerSettings, create_app

    def make():
        app = create_app(
            TrainerSettings(
                store=str(tmp_path / "store"), runs=str(tmp_path / "runs"), encoder_url="http://127.0.0.1:9"
            )
        )
        return TestClient(app)

    return make


def test_trainer_refuses_loose_input_and_resumes_an_interrupted_dataset(trainer, tmp_path):
    from services.common.owner import HOST
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset

    store = Store(str(tmp_path / "store"))
    spec = DatasetSpec(name="half", episodes=2, steps=10, image_size=16)

    def first_only(s, episodes):  # a generation that crashed after episode 0 was stored
        from vjepa_robot_lab.data.datasets import generate_episode

        yield [generate_episode(s, episodes[0])]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_dataset(spec, store, generate=first_only, progress=False)
    meta = store.get_dataset_meta("half")
    dead = _dead_pid()
    rest = {k: v for k, v in meta.items() if k not in ("name", "status", "updated_at", "error")}
    store.put_dataset_meta(
        "half", "running", {**rest, "owner_pid": dead, "owner_host": HOST, "owner_token": f"{dead}-1.0-x"}
    )

    body = {"name": "half", "episodes": 2, "steps": 10, "image_size": 16, "workers": 1}
    with trainer() as c:
        assert store.get_dataset_meta("half")["status"] == "failed"  # recorded at start, not decided on read
        got = c.get("/datasets/half").json()
        assert got["status"] == "failed" and '"resume": true' in got["error"]
        r = c.post("/datasets", json=body)
        assert r.status_code == 409 and "(failed" in r.json()["detail"] and '"resume": true' in r.json()["detail"]

        for field, value in (("overwrite", "yes"), ("overwrite", 1), ("resume", "true")):
            r = c.post("/datasets", json={**body, field: value})
            assert r.status_code == 422 and field in r.json()["detail"], r.text
        r = c.post("/datasets", json={**body, "overwrite": True, "resume": True})
        assert r.status_code == 422 and "not both" in r.json()["detail"]
        r = c.post("/datasets", json={**body, "name": "x\n"})
        assert r.status_code == 422
        assert c.get("/datasets/half%0A").status_code == 422
        assert c.get("/runs/bc-1234%0A").status_code == 400

        r = c.post("/datasets", json={**body, "resume": True, "seed": 3})  # other arguments: refused
        assert r.status_code == 409 and "different arguments" in r.json()["detail"]
        r = c.post("/datasets", json={**body, "resume": True})
        assert r.status_code == 202, r.text
        for _ in range(600):
            if c.get("/datasets/half").json()["status"] != "running":
                break
            threading.Event().wait(0.1)
        got = c.get("/datasets/half").json()
        assert got["status"] == "ready" and got["episodes_done"] == 2, got
    assert sorted(store.episodes_present("half")) == [0, 1]
    assert store.count_steps("half") == 20  # episode 0 kept, episode 1 added: no episode twice


def test_a_replay_buffer_larger_than_memory_is_a_422_before_any_run(trainer):
    with trainer() as c:
        r = c.post("/train/sac", json={"features": "state", "buffer_size": 10**15, "total_steps": 1000})
        assert r.status_code == 422 and "buffer_size" in r.json()["detail"] and "GiB" in r.json()["detail"]
        r = c.post("/train/sac", json={"features": "state", "checkpoint_replay": "no", "total_steps": 1000})
        assert r.status_code == 422 and "checkpoint_replay" in r.json()["detail"]
        assert c.get("/runs").json() == {"runs": []}
