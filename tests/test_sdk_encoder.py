"""The SDK against the real encoder app (services.encoder.app.create_app, tiny random-init V-JEPA 2 on CPU),
served by uvicorn on loopback: sync and async clients, .npy both ways, auth, typed errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from _servers import serve_app
from vjepa_robot_client import AsyncEncoderClient, BadRequest, EncoderClient, NotFound, Unauthorized

pytest.importorskip("services.encoder.app")

TOKEN = "test-token"


@pytest.fixture(scope="module")
def encoder_url(tmp_path_factory):
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    settings = EncoderSettings(preset="tiny", store=str(tmp_path_factory.mktemp("store")), token=TOKEN,
                               device="cpu", threads=1, max_batch=8, max_wait_ms=2.0)
    with serve_app(create_app(settings), startup_timeout=120) as url:
        yield url


def windows(b: int, size: int) -> np.ndarray:
    return np.random.default_rng(b).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


def test_encoder_sync(encoder_url):
    with EncoderClient(encoder_url, token=TOKEN, retries=2, backoff=0.05) as enc:
        assert enc.health().status == "ok"
        info = enc.info()
        assert info.frames == 8 and info.dim > 0 and info.encoder_id
        batch = windows(3, info.image_size)
        emb = enc.encode(batch)
        assert emb.shape == (3, info.dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
        one = enc.encode(batch[1])  # a single (T, H, W, 3) window
        assert one.shape == (1, info.dim)
        np.testing.assert_allclose(one[0], emb[1], rtol=1e-3, atol=1e-4)  # batching does not change the answer
        assert enc.last_encoder_id == info.encoder_id
        with pytest.raises(NotFound):
            enc.dataset_encode_status("no-such-dataset")
        with pytest.raises(BadRequest) as err:  # 7 frames is not a window: the server says so
            enc.encode(batch[:, :7])
        assert err.value.status_code in (400, 422) and err.value.detail


def test_encoder_auth(encoder_url, monkeypatch):
    monkeypatch.delenv("VJEPA_ROBOT_TOKEN", raising=False)  # token=None falls back to it
    with EncoderClient(encoder_url, retries=0) as anon:
        assert anon.health().status == "ok"  # /healthz is open
        with pytest.raises(Unauthorized):
            anon.info()


def test_encoder_async(encoder_url):
    async def main():
        async with AsyncEncoderClient(encoder_url, token=TOKEN, retries=2, backoff=0.05) as enc:
            info = await enc.info()
            batches = [windows(b, info.image_size) for b in (1, 2, 1)]
            out = await asyncio.gather(*(enc.encode(w) for w in batches))  # coalesced by the dynamic batcher
            return info.dim, [o.shape for o in out]

    dim, shapes = asyncio.run(main())
    assert shapes == [(1, dim), (2, dim), (1, dim)]
