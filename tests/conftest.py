"""Shared test fixtures and helpers (others may add theirs here).

    run_server(app) -> context manager yielding base_url   real uvicorn on loopback, free port, background thread
    ToyEncoder(...)                                        the Encoder contract without torch (batching tests)
    write_steps_dataset(store, name, episodes, steps, image_size, seed) -> frames by episode
Fixtures: tiny_encoder (session: Encoder preset tiny), tiny_encoder_dir (session: the same weights saved with
save_pretrained), tmp_store (a Store in tmp_path), tiny_dataset (tmp_store + a 3-episode x 10-step 32x32 dataset).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from _servers import serve_app

run_server = serve_app  # run_server(app, port=None, startup_timeout=20.0) -> ContextManager[str]


class ToyEncoder:
    """The Encoder contract (encode + attributes) without a model: embedding = per-window channel means + frame count.

    assert_batch_gt: every forward pass asserts it received more than this many windows (a real batch).
    delay_s: time per forward pass (lets concurrent requests pile up). fail: raise in every forward pass.
    block: a threading.Event the forward pass waits on (fills the queue for the 503 test).
    """

    def __init__(
        self,
        *,
        dim: int = 4,
        delay_s: float = 0.0,
        assert_batch_gt: int | None = None,
        fail: bool = False,
        block: threading.Event | None = None,
    ):
        self.encoder_id = "toy0000000001"
        self.model_name = "toy"
        self.preprocessing = "none"
        self.dim, self.frames, self.image_size = dim, 8, 32
        self.dtype, self.device = "float32", "cpu"
        self.delay_s, self.assert_batch_gt, self.fail, self.block = delay_s, assert_batch_gt, fail, block
        self.batch_sizes: list[int] = []

    def info(self) -> dict[str, Any]:
        return {
            "encoder_id": self.encoder_id,
            "model": self.model_name,
            "dim": self.dim,
            "frames": self.frames,
            "image_size": self.image_size,
            "dtype": self.dtype,
            "device": self.device,
        }

    def encode(self, windows: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(int(windows.shape[0]))
        if self.block is not None:
            self.block.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("toy forward pass exploded")
        if self.assert_batch_gt is not None:
            assert windows.shape[0] > self.assert_batch_gt, (
                f"expected a batch > {self.assert_batch_gt}, got {windows.shape[0]}"
            )
        means = windows.reshape(windows.shape[0], -1, 3).mean(axis=1) / 255.0  # (B, 3)
        return np.concatenate([means, np.full((windows.shape[0], self.dim - 3), windows.shape[1])], axis=1).astype(
            np.float32
        )


def write_steps_dataset(
    store, name: str, episodes: int = 3, steps: int = 10, image_size: int = 32, seed: int = 0
) -> dict[int, np.ndarray]:
    """A tiny dataset written straight into the store (STEPS_SCHEMA rows, one episode per add) + its meta.

    Returns {episode: (steps, H, W, 3) uint8 frames}. Independent of the dataset generator.
    """
    import pyarrow as pa

    from services.common.store import STEPS_SCHEMA, encode_png

    rng = np.random.default_rng(seed)
    out = {}
    for ep in range(episodes):
        frames = rng.integers(0, 256, size=(steps, image_size, image_size, 3), dtype=np.uint8)
        out[ep] = frames
        zeros2 = [[0.0, 0.0]] * steps
        rows = pa.Table.from_pydict(
            {
                "dataset": [name] * steps,
                "episode": [ep] * steps,
                "step": list(range(steps)),
                "seed": [ep] * steps,
                "frame": [encode_png(f) for f in frames],
                "action": zeros2,
                "reward": [0.0] * steps,
                "position": zeros2,
                "to_target": zeros2,
                "velocity": zeros2,
                "finger_xy": zeros2,
                "target_xy": zeros2,
            },
            schema=STEPS_SCHEMA,
        )
        store.append_episode(name, rows)
    store.put_dataset_meta(
        name,
        "ready",
        {
            "expert": "random",
            "task": "easy",
            "episodes": episodes,
            "steps": steps,
            "seed": seed,
            "image_size": image_size,
        },
    )
    return out


@pytest.fixture(scope="session")
def tiny_encoder():
    """The tiny preset (random init, seed 0) on CPU, one thread: the same weights in every process."""
    from services.encoder.model import Encoder

    return Encoder.from_preset("tiny", device="cpu", num_threads=1)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tiny_encoder):
    """A directory holding the tiny preset's weights, saved with save_pretrained (for the from_pretrained path)."""
    path = tmp_path_factory.mktemp("tiny-vjepa2")
    tiny_encoder.model.save_pretrained(path)
    return path


@pytest.fixture
def tmp_store(tmp_path):
    from services.common.store import Store

    return Store(str(tmp_path / "store"))


@pytest.fixture
def tiny_dataset(tmp_store):
    """(store, name, frames by episode): 3 episodes x 10 steps of random 32x32 frames."""
    name = "tiny-ds"
    return tmp_store, name, write_steps_dataset(tmp_store, name, episodes=3, steps=10, image_size=32)
