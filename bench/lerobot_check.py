"""Load an exported dataset with lerobot's own LeRobotDataset (run by hand, in a separate venv that has lerobot).

    python bench/lerobot_check.py DIR FRAMES.npz      # FRAMES.npz: the store's frames, key "frames", (N, H, W, 3)

Why a separate venv and two shims (docs/lerobot.md): lerobot >= 0.4 (the v3.0 codebase) pins torch < 2.8 and
torchvision < 0.23, and the project pins torch 2.13.0 (CPU). Installed with --no-deps next to torch 2.13.0, lerobot
imports, but the only torchvision and torchcodec wheels reachable here are CUDA builds that fail to load on the CPU
torch ("operator torchvision::nms does not exist"; "libnvrtc.so.13: cannot open shared object file"). So:
  1. if `import torchvision` fails, a stub module stands in for it (lerobot.datasets imports torchvision.transforms
     at module level; LeRobotDataset uses it only for image_transforms, which this check does not pass);
  2. lerobot's video decoder (torchcodec or torchvision.io) is replaced by a PyAV one with its contract: frames at
     the query timestamps, nearest within tolerance_s, as float32 (N, C, H, W) in [0, 1].
Everything else is lerobot's: info.json/stats/tasks/episodes loading, the parquet data through `datasets`, episode
indexing, the from_timestamp shift of each episode's frames in the shared mp4, __getitem__ and __len__.
"""

from __future__ import annotations

import sys
import types

import numpy as np

try:
    import torchvision  # noqa: F401
except Exception:
    for mod in [m for m in sys.modules if m.startswith("torchvision")]:
        del sys.modules[mod]
    import importlib.machinery

    tv = types.ModuleType("torchvision")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)  # datasets.config calls find_spec on it
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.v2 = types.ModuleType("torchvision.transforms.v2")
    tv.transforms.v2.Transform = object
    tv.transforms.v2.functional = types.ModuleType("torchvision.transforms.v2.functional")
    tv.transforms.Compose = tv.transforms.v2.Compose = object
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": tv.transforms,
            "torchvision.transforms.v2": tv.transforms.v2,
            "torchvision.transforms.v2.functional": tv.transforms.v2.functional,
        }
    )

import av
import lerobot.datasets.lerobot_dataset as lrd
import torch

_DECODED: dict[str, list] = {}  # one file decoded once (lerobot's own decoders seek instead)


def decode_pyav(video_path, timestamps, tolerance_s, backend=None):
    if str(video_path) not in _DECODED:
        with av.open(str(video_path)) as c:
            s = c.streams.video[0]
            _DECODED[str(video_path)] = [
                (float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)
            ]
    frames = _DECODED[str(video_path)]
    times = np.array([t for t, _ in frames])
    out = []
    for ts in timestamps:
        i = int(np.argmin(np.abs(times - ts)))
        assert abs(times[i] - ts) <= tolerance_s, (ts, times[i], tolerance_s)
        out.append(torch.from_numpy(frames[i][1]).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


lrd.decode_video_frames = decode_pyav


def main(root: str, frames_npz: str) -> None:
    expected = np.load(frames_npz)["frames"]  # (N, H, W, 3) uint8, in (episode, step) order
    ds = lrd.LeRobotDataset("local/reacher", root=root, video_backend="pyav")
    print(
        "codebase_version",
        ds.meta.info["codebase_version"],
        "fps",
        ds.fps,
        "episodes",
        ds.num_episodes,
        "frames",
        ds.num_frames,
        "len",
        len(ds),
        "features",
        sorted(ds.features),
    )
    assert len(ds) == len(expected) == ds.num_frames
    cam = ds.meta.video_keys[0]
    worst = 0
    for i in range(len(ds)):
        item = ds[i]
        got = (item[cam] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        worst = max(worst, int(np.abs(got.astype(int) - expected[i].astype(int)).max()))
    item = ds[len(ds) - 1]
    print("last item:", {k: (tuple(v.shape) if hasattr(v, "shape") else v) for k, v in item.items()})
    print("task:", item["task"], "| stats keys:", sorted(ds.meta.stats))
    print(f"frames through LeRobotDataset: max abs error {worst} over {len(ds)} frames")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
