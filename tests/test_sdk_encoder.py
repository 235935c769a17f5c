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
def encoder_url(tmp_path_factory, tiny_encoder):
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    settings = EncoderSettings(  # the session's tiny encoder (no second load), behind a token
        store=str(tmp_path_factory.mktemp("store")),
        token=TOKEN,
        device="cpu",
        threads=1,
        max_batch=8,
        max_wait_ms=2.0,
    )
    with serve_app(create_app(settings, encoder=tiny_encoder), startup_timeout=120) as url:
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


# -- frame streams and compressed bodies ------------------------------------------------------------------------


def _tiny_app(tiny_encoder, tmp_path, **kw):
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    return create_app(
        EncoderSettings(store=str(tmp_path), device="cpu", threads=1, max_batch=8, max_wait_ms=1.0, **kw),
        encoder=tiny_encoder,
    )


def test_stream_survives_an_encoder_restart_at_the_cost_of_one_step(tiny_encoder, tmp_path):
    """Kill the real server between steps and start a new one on the same port: the SDK's stream gets 404, re-creates
    the stream, sends the full windows once, and every step still equals POST /encode of the full windows."""
    from _servers import free_port

    from vjepa_robot_client.window import episode_windows

    n, size, steps = 2, 32, 12
    eps = np.random.default_rng(7).integers(0, 256, (n, steps, size, size, 3), dtype=np.uint8)
    want = [episode_windows(eps[i]) for i in range(n)]  # (steps, 8, H, W, 3) per env
    port = free_port()
    enc = EncoderClient(f"http://127.0.0.1:{port}", retries=6, backoff=0.2, compress=None)
    with serve_app(_tiny_app(tiny_encoder, tmp_path), port=port) as url:
        s = enc.stream(n, size, size)
        first_id = s.stream_id
        for t in range(6):
            got = s.step(eps[:, t])
            assert np.array_equal(got, enc.encode(np.stack([want[i][t] for i in range(n)])))
    with serve_app(_tiny_app(tiny_encoder, tmp_path), port=port) as url:  # a fresh encoder: the stream is gone
        for t in range(6, steps):
            got = s.step(eps[:, t])
            assert np.array_equal(got, enc.encode(np.stack([want[i][t] for i in range(n)]))), t
        assert s.resyncs == 1 and s.stream_id != first_id
        s.close()
        import httpx

        assert httpx.get(f"{url}/metrics").text.count("vjepa_encoder_streams 0.0") == 1
    enc.close()


def test_async_stream_and_compressed_encode_equal_plain(tiny_encoder, tmp_path):
    from vjepa_robot_client.window import episode_windows

    eps = np.random.default_rng(8).integers(0, 256, (3, 10, 32, 32, 3), dtype=np.uint8)
    batch = windows(2, 32)

    async def main(url):
        async with AsyncEncoderClient(url, compress="zstd") as enc:
            async with await enc.stream(3, 32, 32) as s:
                out = []
                for t in range(10):
                    reset = [1] if t == 4 else []
                    out.append(await s.step(eps[:, t], reset=reset))
            return out, await enc.encode(batch)

    with serve_app(_tiny_app(tiny_encoder, tmp_path)) as url:
        streamed, zstd_emb = asyncio.run(main(url))
        plain = EncoderClient(url, compress=None)
        gz = EncoderClient(url, compress="gzip")
        assert np.array_equal(zstd_emb, plain.encode(batch)) and np.array_equal(gz.encode(batch), plain.encode(batch))
        restart = eps[1, 4:]  # env 1's second episode starts at step 4
        for t in range(10):
            full = np.stack(
                [
                    episode_windows(eps[0])[t],
                    episode_windows(restart)[t - 4] if t >= 4 else episode_windows(eps[1])[t],
                    episode_windows(eps[2])[t],
                ]
            )
            assert np.array_equal(streamed[t], plain.encode(full)), t


def test_compress_defaults_to_zstd_for_remote_urls_only():
    assert EncoderClient("http://127.0.0.1:1").compress is None
    assert EncoderClient("http://localhost:1").compress is None
    assert EncoderClient("https://encoder.example.org").compress == "zstd"
    assert EncoderClient("http://127.0.0.1:1", compress="gzip").compress == "gzip"
    with pytest.raises(ValueError, match="compress"):
        EncoderClient("http://127.0.0.1:1", compress="lz4")
