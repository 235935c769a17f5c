"""LeRobotDataset v3.0 export and import: the store's datasets in LeRobot's format, and LeRobot datasets in the store.

    export_lerobot(store, "jacobian-easy-100", "out/reacher")         # -> a LeRobot v3.0 directory
    import_lerobot(store, "out/reacher", name="reacher-copy")          # -> a store dataset (frames as PNG rows)

The layout is LeRobot's own (read from lerobot 0.4.4, lerobot/datasets/utils.py and lerobot_dataset.py):

    meta/info.json                                   codebase_version "v3.0", fps, features, path templates
    meta/stats.json                                  per feature: min, max, mean, std, count, q01..q99
    meta/tasks.parquet                               task (the pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, data/video offsets
    data/chunk-000/file-000.parquet                  one row per frame: state, action, reward, indices
    videos/observation.images.top/chunk-000/file-000.mp4   every episode's frames, back to back

Episodes are packed into one file of each kind (v3.0 packs many episodes per file; the 100 MB data and 200 MB video
limits of LeRobot's writer start a new file-NNN, which this exporter does by episode too). An episode's frames are
the video's frames from `videos/<key>/from_timestamp` to `to_timestamp`, at `fps`.

Frame t of a store episode is the frame the expert acted on at step t (vjepa_robot_lab/data/datasets.py), so one LeRobot
row is (observation.images.top, observation.state, action, next.reward) of that step, as LeRobot records them.

Video codecs (PyAV, which bundles FFmpeg with libx264 and SVT-AV1): `h264-lossless` (default) is libx264rgb at
qp 0 on RGB planes, so frames round-trip bit-identical; `av1` is LeRobot's own default (libsvtav1, yuv420p, crf 30,
g 2): much smaller, lossy (docs/lerobot.md gives the measured loss). Import decodes any codec FFmpeg reads.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from services.common.store import STEPS_SCHEMA, DatasetNotFound, Store, decode_png, encode_png, now_iso
from vjepa_robot_client.contract import validate_name
from vjepa_robot_lab.envs.env import CONTROL_TIMESTEP

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"  # lerobot.datasets.utils.CHUNK_FILE_PATTERN
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
CHUNKS_SIZE, DATA_FILE_MB, VIDEO_FILE_MB = 1000, 100, 200  # LeRobot's defaults (files per chunk, MB per file)
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # lerobot.datasets.compute_stats.DEFAULT_QUANTILES -> q01 .. q99
CAMERA = "observation.images.top"  # dm_control reacher's camera 0 is the fixed top-down view
OURS = "meta/vjepa_robot.json"  # the store's dataset metadata (expert, task, seed, ...): read back by import
FPS = int(round(1 / CONTROL_TIMESTEP))  # 50: one stored step per simulator step of 0.02 s

STATE_NAMES = ["shoulder_angle", "wrist_angle", "to_target_x", "to_target_y", "shoulder_velocity", "wrist_velocity"]
ENV_STATE_NAMES = ["finger_x", "finger_y", "target_x", "target_y"]
ACTION_NAMES = ["shoulder_torque", "wrist_torque"]
DEFAULT_FEATURES = {  # lerobot.datasets.utils.DEFAULT_FEATURES: every LeRobot dataset has these five
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


@dataclass(frozen=True)
class Codec:
    name: str  # FFmpeg encoder
    pix_fmt: str
    options: dict[str, str]
    lossless: bool


CODECS = {
    "h264-lossless": Codec("libx264rgb", "rgb24", {"qp": "0", "preset": "veryfast"}, True),
    "av1": Codec("libsvtav1", "yuv420p", {"crf": "30", "g": "2", "preset": "8"}, False),  # LeRobot's default
}


class LeRobotFormatError(ValueError):
    """A directory that is not a LeRobot v3.0 dataset this importer can read (the message says what is wrong)."""


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------


def export_lerobot(
    store: Store,
    name: str,
    out_dir: str | Path,
    *,
    codec: str = "h264-lossless",
    task_text: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Write store dataset `name` as a LeRobot v3.0 dataset in `out_dir`; returns its info.json (plus `bytes`).

    Written into a hidden sibling `.<name>.partial-*` and renamed at the end: a crash never leaves a half dataset at
    `out_dir`. `overwrite` replaces only a previous export by this tool (_check_export_target); anything else at
    `out_dir` (a file, a directory of other things) is refused with ExportRefused, and nothing is touched.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}: choose one of {', '.join(CODECS)}")
    meta = store.get_dataset_meta(name)  # DatasetNotFound
    if meta.get("status") != "ready":
        raise ValueError(f"dataset {name!r} is {meta.get('status')}, not ready: only finished datasets export")
    out = Path(out_dir)
    replace_old = _check_export_target(out, overwrite)
    # a fresh, uniquely named sibling: nothing of the user's is ever cleared to make room for it
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the export private
    try:
        info = _write(store, name, meta, tmp, CODECS[codec], task_text)
        (tmp / EXPORT_MARKER).write_text(json.dumps({"tool": "vjepa-robot", "source_dataset": name}) + "\n")
        if replace_old:  # a previous export: moved aside, the new one put in place, then the old one removed
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.is_dir():
                out.rmdir()  # empty (checked above)
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**info, "bytes": directory_bytes(out)}


EXPORT_MARKER = "meta/vjepa_robot.export"  # written last by every export: what makes a directory ours to replace
EXPORT_ENTRIES = {"meta", "data", "videos"}  # the top level of an export (LeRobot's layout)


class ExportRefused(FileExistsError):
    """The output path is not ours to replace (the message says why and what to do)."""


def _check_export_target(out: Path, overwrite: bool) -> bool:
    """True when `out` holds a previous export to replace; False when it is absent or an empty directory.

    Raises ExportRefused, touching nothing, for a file, for a non-empty directory without overwrite, and, with
    overwrite, for any directory that is not recognisably a previous export by this tool (its marker file and
    LeRobot's meta/info.json) or that holds anything beyond an export's own meta/, data/ and videos/.
    """
    if out.is_symlink() and not out.exists():
        raise ExportRefused(f"{out} is a broken symbolic link: choose another directory")
    if not out.exists():
        return False
    if not out.is_dir():
        raise ExportRefused(f"{out} is a file, not a directory: choose a directory to export into")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if not overwrite:
        raise ExportRefused(f"{out} exists and is not empty: choose another directory or pass --overwrite")
    if not (_is_our_export(out) and (out / "meta/info.json").is_file()):
        raise ExportRefused(
            f"{out} is not a previous export by vjepa-robot (no {EXPORT_MARKER} and meta/info.json): --overwrite "
            "replaces only the tool's own exports; choose another directory or empty this one yourself"
        )
    foreign = [e for e in entries if e not in EXPORT_ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ExportRefused(
            f"{out} is a previous export but also holds {shown}: --overwrite would delete them; move them out "
            "or choose another directory"
        )
    return True


def _is_our_export(out: Path) -> bool:
    """The marker of this version's exports, or (exports made before it) meta/vjepa_robot.json with `exported_at`."""
    if (out / EXPORT_MARKER).is_file():
        return True
    try:
        return "exported_at" in json.loads((out / OURS).read_text())
    except (OSError, ValueError, TypeError):
        return False


def _write(store: Store, name: str, meta: dict, root: Path, codec: Codec, task_text: str | None) -> dict:
    if "state" in store.steps_schema(name).names:  # store.task_steps_schema: a task other than reacher
        raise ValueError(
            f"dataset {name!r} is of task {meta.get('task')!r}: the LeRobot export writes reacher's state and action "
            "names (STEPS_SCHEMA datasets) only, not yet another task's"
        )
    cols = ["seed", "frame", "action", "reward", "position", "to_target", "velocity", "finger_xy", "target_xy"]
    t = store.read_steps(name, cols)
    n = t.num_rows
    if n == 0:
        raise ValueError(f"dataset {name!r} has no steps to export")
    episode = t.column("episode").to_numpy().astype(np.int64)
    step = t.column("step").to_numpy().astype(np.int64)
    vec = {c: _vec(t.column(c)) for c in ("action", "position", "to_target", "velocity", "finger_xy", "target_xy")}
    state = np.concatenate([vec["position"], vec["to_target"], vec["velocity"]], axis=1)  # (N, 6) float32
    env_state = np.concatenate([vec["finger_xy"], vec["target_xy"]], axis=1)  # (N, 4) float32
    action = vec["action"]  # (N, 2) float32
    reward = t.column("reward").to_numpy().astype(np.float32)  # (N,)
    seeds = t.column("seed").to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(episode) != 0])
    ends = np.r_[starts[1:], n]
    # LeRobot's episode_index runs 0..E-1; the store's episode numbers are kept in meta/episodes as `store_episode`
    ep_index = np.repeat(np.arange(len(starts)), ends - starts)
    done = np.zeros(n, bool)
    done[ends - 1] = True
    frames_png = t.column("frame")
    has_frames = bool(frames_png[0].as_py())
    task = task_text or f"dm_control reacher-{meta.get('task', 'easy')}: bring the fingertip to the target"

    features: dict[str, Any] = {}
    if has_frames:
        h, w = decode_png(frames_png[0].as_py()).shape[:2]
        features[CAMERA] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
    features |= {
        "observation.state": {"dtype": "float32", "shape": [6], "names": STATE_NAMES},
        "observation.environment_state": {"dtype": "float32", "shape": [4], "names": ENV_STATE_NAMES},
        "action": {"dtype": "float32", "shape": [2], "names": ACTION_NAMES},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        **DEFAULT_FEATURES,
    }

    # -- video: every episode's frames back to back in one file (LeRobot concatenates episodes the same way) -------
    video_meta: dict[str, np.ndarray] = {}
    if has_frames:
        video_path = root / VIDEO_PATH.format(video_key=CAMERA, chunk_index=0, file_index=0)
        video_path.parent.mkdir(parents=True)
        img_stats = _RunningImageStats()
        with VideoWriter(video_path, w, h, FPS, codec) as vw:
            for i in range(n):
                frame = decode_png(frames_png[i].as_py())  # (H, W, 3) uint8
                vw.write(frame)
                if i % 5 == 0:  # LeRobot samples frames for image stats too (compute_stats.sample_indices)
                    img_stats.add(frame)
        features[CAMERA]["info"] = {
            "video.height": h,
            "video.width": w,
            "video.codec": vw.codec_name,
            "video.pix_fmt": codec.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": FPS,
            "video.channels": 3,
            "has_audio": False,
        }
        video_meta = {
            f"videos/{CAMERA}/chunk_index": np.zeros(len(starts), np.int64),
            f"videos/{CAMERA}/file_index": np.zeros(len(starts), np.int64),
            f"videos/{CAMERA}/from_timestamp": starts / FPS,
            f"videos/{CAMERA}/to_timestamp": ends / FPS,
        }

    # -- data: one row per frame ----------------------------------------------------------------------------------
    data = pa.table(
        {
            "observation.state": _fixed(state),
            "observation.environment_state": _fixed(env_state),
            "action": _fixed(action),
            "next.reward": pa.array(reward),
            "next.done": pa.array(done),
            "timestamp": pa.array((step / FPS).astype(np.float32)),
            "frame_index": pa.array(step),
            "episode_index": pa.array(ep_index),
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "task_index": pa.array(np.zeros(n, np.int64)),
        }
    )
    _write_parquet(data, root / DATA_PATH.format(chunk_index=0, file_index=0))

    # -- tasks: the task string is the pandas index (LeRobotDatasetMetadata.get_task_index uses tasks.loc[task]) ----
    tasks = pa.table({"task_index": pa.array([0], pa.int64()), "task": pa.array([task])})
    _write_parquet(
        tasks.replace_schema_metadata({b"pandas": json.dumps(_pandas_meta()).encode()}), root / "meta/tasks.parquet"
    )

    # -- stats: global (stats.json) and per episode (stats/<feature>/<stat> columns of meta/episodes) --------------
    numeric = {
        "observation.state": state,
        "observation.environment_state": env_state,
        "action": action,
        "next.reward": reward[:, None],
        "timestamp": (step / FPS)[:, None],
        "frame_index": step[:, None],
        "episode_index": ep_index[:, None],
        "index": np.arange(n)[:, None],
        "task_index": np.zeros((n, 1)),
    }
    stats = {k: _stats(v) for k, v in numeric.items()}
    if has_frames:
        stats[CAMERA] = img_stats.result()
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))

    ep_cols: dict[str, Any] = {
        "episode_index": pa.array(np.arange(len(starts), dtype=np.int64)),
        "tasks": pa.array([[task]] * len(starts), pa.list_(pa.string())),
        "length": pa.array((ends - starts).astype(np.int64)),
        "data/chunk_index": pa.array(np.zeros(len(starts), np.int64)),
        "data/file_index": pa.array(np.zeros(len(starts), np.int64)),
        "dataset_from_index": pa.array(starts.astype(np.int64)),
        "dataset_to_index": pa.array(ends.astype(np.int64)),
        **{k: pa.array(v) for k, v in video_meta.items()},
        "meta/episodes/chunk_index": pa.array(np.zeros(len(starts), np.int64)),
        "meta/episodes/file_index": pa.array(np.zeros(len(starts), np.int64)),
        "store_episode": pa.array(episode[starts].astype(np.int64)),
        "seed": pa.array(seeds[starts]),
    }
    for key, values in numeric.items():
        per = [_stats(values[a:b]) for a, b in zip(starts, ends)]
        for stat in per[0]:
            ep_cols[f"stats/{key}/{stat}"] = pa.array([p[stat] for p in per], pa.list_(pa.float64()))
    _write_parquet(pa.table(ep_cols), root / EPISODES_PATH.format(chunk_index=0, file_index=0))

    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": "dm_control_reacher",
        "total_episodes": len(starts),
        "total_frames": n,
        "total_tasks": 1,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": FPS,
        "splits": {"train": f"0:{len(starts)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if has_frames else None,
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    ours = {k: v for k, v in meta.items() if k not in ("status", "updated_at", "owner_pid", "owner_host")}
    (root / OURS).write_text(
        json.dumps({"source_dataset": name, "meta": ours, "exported_at": now_iso()}, indent=2, default=str)
    )
    return info


def _pandas_meta() -> dict:
    """pandas' parquet metadata making `task` the index, as LeRobot's write_tasks (DataFrame.to_parquet) leaves it."""

    def col(name: str, pt: str, nt: str) -> dict:
        return {"name": name, "field_name": name, "pandas_type": pt, "numpy_type": nt, "metadata": None}

    return {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [col("task_index", "int64", "int64"), col("task", "unicode", "object")],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }


class VideoWriter:
    """(H, W, 3) uint8 frames -> an mp4 at `fps` (PyAV). Frame k has pts k in time base 1/fps."""

    def __init__(self, path: Path, width: int, height: int, fps: int, codec: Codec):
        import os

        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level otherwise

        self._av = av
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(codec.name, rate=fps, options=dict(codec.options))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, codec.pix_fmt
        self.stream.time_base = Fraction(1, fps)
        self.codec_name = self.stream.codec_context.codec.canonical_name  # e.g. "h264", "av1" (as LeRobot records)
        self._k = 0

    def write(self, frame: np.ndarray) -> None:
        vf = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self._k
        self._k += 1
        self.container.mux(self.stream.encode(vf))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.container.mux(self.stream.encode(None))  # flush the encoder's delayed frames
        finally:
            self.container.close()


def read_video(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp in seconds, (H, W, 3) uint8 RGB frame) for every frame of a video file, in order (PyAV)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield float(frame.pts * stream.time_base), frame.to_ndarray(format="rgb24")


class _RunningImageStats:
    """Per-channel min/max/mean/std/quantiles of sampled frames, scaled to [0, 1] with shape (3, 1, 1) as LeRobot."""

    def __init__(self):
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        self.frames.append(frame[::4, ::4].reshape(-1, 3))  # every 4th pixel: stats, not a copy of the video

    def result(self) -> dict:
        x = np.concatenate(self.frames).astype(np.float64) / 255.0  # (P, 3)
        out = {k: [[[float(v)]] for v in vals] for k, vals in _stats(x).items() if k != "count"}
        return {**out, "count": [len(self.frames)]}


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    out |= {f"q{int(q * 100):02d}": np.quantile(x, q, axis=0) for q in QUANTILES}
    return {**{k: [float(v) for v in vals] for k, vals in out.items()}, "count": [int(len(x))]}


def _vec(column) -> np.ndarray:
    from services.common.store import fixed_list_to_numpy

    return fixed_list_to_numpy(column, 2).astype(np.float32)


def _fixed(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")  # LeRobot's writer uses snappy too


def directory_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ----------------------------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------------------------


def read_info(root: str | Path) -> dict:
    """meta/info.json of a LeRobot v3.0 dataset, checked for what import needs (LeRobotFormatError otherwise)."""
    root = Path(root)
    path = root / "meta/info.json"
    if path.exists():
        _inside(root, path, "meta/info.json")
    if not path.is_file():
        raise LeRobotFormatError(f"{root} is not a LeRobot dataset: no meta/info.json")
    info = json.loads(path.read_text())
    version = str(info.get("codebase_version"))
    if not version.startswith("v3"):
        raise LeRobotFormatError(
            f"{root} is a LeRobot {version} dataset; import reads v3.0 (convert it with "
            "lerobot's convert_dataset_v21_to_v30 first)"
        )
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise LeRobotFormatError(f"{root}/meta/info.json has no {key!r}")
    return info


def import_lerobot(
    store: Store,
    root: str | Path,
    *,
    name: str | None = None,
    camera: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Read a local LeRobot v3.0 dataset (one camera, a 2-d action) into the store as dataset `name`.

    Frames are decoded from the videos (or read from `image` features) and stored as PNG step rows, one episode
    per append; the dataset is `running` while it is written and `ready` at the end; on any error it is dropped,
    so a crash never leaves a partial dataset. Our own exports carry the full state (position, to_target,
    velocity, finger/target xy) and seeds; foreign datasets keep frames, actions and rewards (state columns 0).
    """
    root = Path(root)
    info = read_info(root)
    ours = json.loads(_inside(root, root / OURS, OURS).read_text()) if (root / OURS).is_file() else None
    name = name or (ours or {}).get("source_dataset") or _name_from_dir(root)
    validate_name(name, "dataset name")
    features = info["features"]
    cams = [k for k, f in features.items() if f.get("dtype") in ("video", "image")]
    if camera is not None:
        if camera not in cams:
            raise LeRobotFormatError(f"no camera {camera!r} in {root}: choose one of {', '.join(cams) or 'none'}")
        cams = [camera]
    if len(cams) != 1:
        raise LeRobotFormatError(
            f"{root} has {len(cams)} cameras ({', '.join(cams) or 'none'}): import takes one; pick it with --camera"
        )
    cam = cams[0]
    act = features.get("action")
    if act is None or list(act.get("shape", [])) != [2]:
        raise LeRobotFormatError(
            f"{root}: the store holds 2-d actions (reacher's two torques); this dataset's "
            f"action is {None if act is None else act.get('shape')}"
        )
    try:
        existing = store.get_dataset_meta(name)
    except DatasetNotFound:
        existing = None
    target = name
    if existing is not None or store.has_steps(name):
        if not overwrite:
            raise FileExistsError(f"dataset {name!r} already exists: choose another --name or pass --overwrite")
        # the new dataset is written completely under a temporary name first; the old one is dropped only then
        target = f"{name[:40]}-importing-{secrets.token_hex(4)}"

    episodes = _read_episodes(root)
    data = _read_data(root, info)
    fps = float(info["fps"])
    meta = {
        **((ours or {}).get("meta") or {"expert": "lerobot", "task": "unknown"}),
        "source": f"lerobot:{root.resolve()}",
        "imported_at": now_iso(),
        "lerobot_fps": fps,
        "lerobot_camera": cam,
        "episodes": len(episodes),
        "episodes_done": 0,
    }
    if target != name:
        meta["replaces"] = name  # a leftover of a crash mid-import says what it was for
    store.put_dataset_meta(target, "running", meta)
    try:
        frames_of = _frame_reader(root, info, cam, episodes, data)
        sizes = set()
        for k, ep in enumerate(episodes):
            rows = data[int(ep["dataset_from_index"]) : int(ep["dataset_to_index"])]
            frames = frames_of(k, ep, rows)  # (T, H, W, 3) uint8
            sizes.add(frames.shape[1:3])
            store_ep = int(ep.get("store_episode", ep["episode_index"]))
            seed = int(ep.get("seed", store_ep))
            store.append_episode(target, _episode_rows(name, store_ep, seed, rows, frames))
            meta["episodes_done"] = k + 1
        from vjepa_robot_lab.data.datasets import summarise

        (h, w), *_ = sorted(sizes)
        meta.update(summarise(store, target))
        meta.setdefault("steps", int(max(int(e["length"]) for e in episodes)))
        meta["image_size"] = int(h) if h == w else meta.get("image_size", int(h))
        meta.pop("replaces", None)
        if target != name:  # complete: now the old dataset goes and the new one takes its name
            store.drop_dataset(name)
            store.copy_steps(target, name)
            store.put_dataset_meta(name, "ready", meta)
            store.drop_dataset(target)
        else:
            store.put_dataset_meta(name, "ready", meta)
        store.compact_steps(name)
    except BaseException:
        store.drop_dataset(target)  # never a partial dataset; an existing one is untouched until the new one is whole
        raise
    return store.get_dataset_meta(name)


def _inside(root: Path, path: Path, what: str) -> Path:
    """`path` if it resolves (symbolic links followed) inside the dataset directory `root`; LeRobotFormatError else:
    an import reads nothing outside the directory it was given (no '..', absolute paths or links out)."""
    base = root.resolve()
    real = Path(path).resolve()
    if real != base and base not in real.parents:
        raise LeRobotFormatError(
            f"{what} ({path}) resolves to {real}, outside the dataset directory {base}: import reads only files "
            "inside it"
        )
    return real


def _name_from_dir(root: Path) -> str:
    import re

    return (re.sub(r"[^A-Za-z0-9_-]+", "-", root.resolve().name).strip("-_") or "lerobot")[:64]


def _read_episodes(root: Path) -> list[dict]:
    files = [_inside(root, f, "episodes file") for f in sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet"))]
    if not files:
        raise LeRobotFormatError(f"{root} has no meta/episodes/chunk-*/file-*.parquet")
    eps = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    keep = lambda row: {k: v for k, v in row.items() if not k.startswith("stats/")}  # noqa: E731
    return sorted((keep(r) for r in eps), key=lambda r: r["episode_index"])


def _read_data(root: Path, info: dict) -> list[dict]:
    files = [_inside(root, f, "data file") for f in sorted((root / "data").glob("chunk-*/file-*.parquet"))]
    if not files:
        raise LeRobotFormatError(f"{root} has no data/chunk-*/file-*.parquet")
    table = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("index")
    return table.to_pylist()


def _frame_reader(root: Path, info: dict, cam: str, episodes: list[dict], data: list[dict]):
    """A function (k, episode row, data rows) -> (T, H, W, 3) uint8 frames of that episode."""
    fps = float(info["fps"])
    if info["features"][cam]["dtype"] == "image":

        def image_frames(k, ep, rows):
            return np.stack([decode_png(_image_bytes(root, r[cam])) for r in rows])

        return image_frames
    decoded: dict[Path, list[tuple[float, np.ndarray]]] = {}  # one video file decoded once, kept while needed

    def video_frames(k, ep, rows):
        path = _video_path(root, info, cam, ep)
        if path not in decoded:
            decoded.clear()
            decoded[path] = list(read_video(path))
        start = float(ep[f"videos/{cam}/from_timestamp"])
        tol = 0.5 / fps  # LeRobot's tolerance_s default is 1e-4 s; half a frame is enough to pick the nearest frame
        times = np.array([t for t, _ in decoded[path]])
        out = []
        for r in rows:
            i = int(np.argmin(np.abs(times - (start + float(r["timestamp"])))))
            if abs(times[i] - (start + float(r["timestamp"]))) > tol:
                raise LeRobotFormatError(
                    f"{path}: no frame at {start + float(r['timestamp']):.4f} s "
                    f"(episode {ep['episode_index']}, frame {r['frame_index']})"
                )
            out.append(decoded[path][i][1])
        return np.stack(out)

    return video_frames


def _video_path(root: Path, info: dict, cam: str, ep: dict) -> Path:
    path = root / str(info["video_path"]).format(
        video_key=cam,
        chunk_index=int(ep[f"videos/{cam}/chunk_index"]),
        file_index=int(ep[f"videos/{cam}/file_index"]),
    )
    return _inside(root, path, f"video of episode {ep.get('episode_index')}")


def _image_bytes(root: Path, value) -> bytes:
    if isinstance(value, dict):  # datasets.Image: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return value["bytes"]
        return _inside(root, root / str(value["path"]), "image path").read_bytes()
    return bytes(value)


def _episode_rows(name: str, episode: int, seed: int, rows: list[dict], frames: np.ndarray) -> pa.Table:
    """One episode as STEPS_SCHEMA rows: ours map back exactly; a foreign state is not kept (zeros)."""
    t = len(rows)
    zeros = np.zeros((t, 2), np.float32)
    state = np.asarray([r["observation.state"] for r in rows], np.float32) if "observation.state" in rows[0] else None
    ours = state is not None and state.shape[1] == 6 and "observation.environment_state" in rows[0]
    env_state = np.asarray([r["observation.environment_state"] for r in rows], np.float32) if ours else None
    reward = np.asarray([_scalar(r.get("next.reward", 0.0)) for r in rows], np.float32)
    cols = {
        "dataset": pa.array([name] * t),
        "episode": pa.array(np.full(t, episode, np.int32)),
        "step": pa.array(np.asarray([_scalar(r["frame_index"]) for r in rows], np.int32)),
        "seed": pa.array(np.full(t, seed, np.int64)),
        "frame": pa.array([encode_png(f) for f in frames], pa.binary()),
        "action": _fixed(np.asarray([r["action"] for r in rows], np.float32)),
        "reward": pa.array(reward),
        "position": _fixed(state[:, 0:2] if ours else zeros),
        "to_target": _fixed(state[:, 2:4] if ours else zeros),
        "velocity": _fixed(state[:, 4:6] if ours else zeros),
        "finger_xy": _fixed(env_state[:, 0:2] if ours else zeros),
        "target_xy": _fixed(env_state[:, 2:4] if ours else zeros),
    }
    return pa.table(cols, schema=STEPS_SCHEMA)


def _scalar(v):
    return v[0] if isinstance(v, (list, tuple)) else v
