"""Export/import round trip of an expert dataset through the LeRobot v3.0 format, per video codec.

    nice python bench/lerobot_roundtrip.py --episodes 10 --steps 200 --image-size 256
        # writes bench/results/lerobot_roundtrip.json (and keeps nothing else)

Measures: bytes on disk of the store's steps table (PNG frames + columns, LanceDB) against the LeRobot directory
(parquet + mp4 + meta), export and import seconds, and the frames' round-trip error (max abs, PSNR; identical frames
have infinite PSNR). Also writes FRAMES.npz + the lossless export for bench/lerobot_check.py when --keep DIR is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.common.store import Store, decode_png  # noqa: E402
from vjepa_robot_lab.data import lerobot as L  # noqa: E402
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset  # noqa: E402


def frames(store: Store, name: str) -> np.ndarray:
    return np.stack([decode_png(f) for f in store.read_steps(name, ["frame"]).column("frame").to_pylist()])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--keep", type=Path, default=None, help="copy the lossless export + frames.npz here")
    a = ap.parse_args()
    result: dict = {"episodes": a.episodes, "steps": a.steps, "image_size": a.image_size, "codecs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = Store(str(tmp / "store"))
        t0 = time.perf_counter()
        create_dataset(
            DatasetSpec(name="src", episodes=a.episodes, steps=a.steps, image_size=a.image_size),
            store,
            workers=1,
            progress=False,
        )
        result["generate_s"] = round(time.perf_counter() - t0, 1)
        result["store_steps_table_bytes"] = L.directory_bytes(tmp / "store" / "steps__src.lance")
        ref = frames(store, "src").astype(np.int16)
        for codec in L.CODECS:
            out = tmp / f"lr-{codec}"
            t0 = time.perf_counter()
            info = L.export_lerobot(store, "src", out, codec=codec)
            export_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            L.import_lerobot(store, out, name=f"back-{codec}")
            import_s = time.perf_counter() - t0
            got = frames(store, f"back-{codec}").astype(np.int16)
            err = np.abs(got - ref)
            mse = float(np.mean(err.astype(np.float64) ** 2))
            video = out / L.VIDEO_PATH.format(video_key=L.CAMERA, chunk_index=0, file_index=0)
            result["codecs"][codec] = {
                "bytes": info["bytes"],
                "video_bytes": video.stat().st_size,
                "export_s": round(export_s, 1),
                "import_s": round(import_s, 1),
                "bit_identical": bool(mse == 0),
                "max_abs_error": int(err.max()),
                "mean_abs_error": round(float(err.mean()), 3),
                "psnr_db": None if mse == 0 else round(10 * np.log10(255**2 / mse), 2),
                "pixels_off_by_more_than_8": round(float(np.mean(err.max(axis=-1) > 8)), 5),
            }
            print(codec, result["codecs"][codec], flush=True)
            if a.keep and L.CODECS[codec].lossless:
                import shutil

                a.keep.mkdir(parents=True, exist_ok=True)
                shutil.copytree(out, a.keep / "lerobot", dirs_exist_ok=True)
                np.savez(a.keep / "frames.npz", frames=ref.astype(np.uint8))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "lerobot_roundtrip.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
