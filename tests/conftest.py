"""Shared test fixtures and helpers (others may add theirs here).

    run_server(app) -> context manager yielding base_url   real uvicorn on loopback, free port, background thread
    ToyEncoder(...)                                        the Encoder contract without torch (batching tests)
    write_steps_dataset(store, name, episodes, steps, image_size, seed) -> frames by episode
    wait_until(pred, timeout, what, every) / poll_json(client, path, done, timeout) -> the one polling helper
    unique_name(prefix) -> "prefix-1a2b3c": names that never collide in the session's shared store
Fixtures: quick_retries (the SDK's retry policy keeps its attempts but waits ~10 ms between them: for tests of
what a command says once a dead service has used up its retries), tiny_encoder (session: Encoder preset tiny),
tiny_encoder_dir (session: the same weights saved with save_pretrained), tmp_store (a Store in tmp_path),
tiny_dataset (tmp_store + a 3-episode x 10-step 32x32 dataset),
stack (session: ONE encoder service on the tiny_encoder and ONE trainer service on loopback, sharing one store;
tests give their datasets and runs unique names), dataset_64 (session: a ready jacobian dataset of 64 px frames in
the stack's store, generated with workers=1).
Markers: slow (long end-to-end tests), e2e (given to every test that uses `stack`: its real services).
Dataset generation in tests uses workers=1 (in process); test_env_datasets.py keeps the spawn path (workers=2).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
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


@pytest.fixture
def quick_retries(monkeypatch):
    """Every retry of the SDK's one policy is still made, 10 ms apart instead of 0.5-8 s (jittered backoff)."""
    from vjepa_robot_client._transport import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, retry_after: 0.01)


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


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: goes through the session stack's real services (the `stack` fixture)")


def pytest_collection_modifyitems(config, items):
    """Every test that uses the session stack is an end-to-end test: `-m "not e2e"` leaves the services unstarted."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


def wait_until(pred: Callable[[], Any], timeout: float = 300.0, what: str = "condition", every: float = 0.3) -> Any:
    """Call pred every `every` s until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not reached after {timeout} s"
        time.sleep(every)


def poll_json(client, path: str, done: Callable[[dict], bool], timeout: float = 300.0) -> dict:
    """GET `path` until done(body); the last body names the state in the failure message."""
    last: dict = {}

    def fetch():
        last.clear()
        last.update(client.get(path).json())
        return done(last)

    try:
        wait_until(fetch, timeout, path)
    except AssertionError:
        raise AssertionError(f"{path} still {last.get('status')} after {timeout} s: {last}") from None
    return dict(last)


def unique_name(prefix: str) -> str:
    """A dataset or run name no other test in the session uses (the session stack shares one store)."""
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory, tiny_encoder):
    """ONE encoder service (the session's tiny encoder, no reload) and ONE trainer service on loopback, one store:
    {"encoder": url, "trainer": url, "store": uri, "runs": Path}."""
    from services.encoder.app import create_app as create_encoder_app
    from services.encoder.settings import EncoderSettings
    from services.trainer.app import TrainerSettings
    from services.trainer.app import create_app as create_trainer_app

    root = tmp_path_factory.mktemp("stack")
    store = str(root / "store")
    enc_app = create_encoder_app(EncoderSettings(store=store, max_batch=32, max_wait_ms=5), encoder=tiny_encoder)
    with serve_app(enc_app, startup_timeout=180) as enc_url:  # a loaded 2-core machine starts slowly
        tr_app = create_trainer_app(TrainerSettings(store=store, runs=str(root / "runs"), encoder_url=enc_url))
        with serve_app(tr_app, startup_timeout=180) as tr_url:
            yield {"encoder": enc_url, "trainer": tr_url, "store": store, "runs": root / "runs"}


@pytest.fixture(scope="session")
def dataset_64(stack):
    """The name of a ready dataset in the stack's store: 4 jacobian episodes x 20 steps of 64 px frames (easy)."""
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset

    name = "session-64"
    spec = DatasetSpec(name=name, expert="jacobian", task="easy", episodes=4, steps=20, seed=0, image_size=64)
    create_dataset(spec, Store(stack["store"]), workers=1, progress=False)
    return name
