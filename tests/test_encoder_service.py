"""The encoder service over real HTTP (uvicorn on loopback): routes, batching, bad input, datasets, auth, metrics."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import ToyEncoder, run_server

from services.common.store import embeddings_table_name
from services.encoder.app import create_app
from services.encoder.settings import EncoderSettings
from vjepa_robot_client.contract import NPY_MEDIA_TYPE, from_npy_bytes, to_npy_bytes
from vjepa_robot_client.window import window_at

NPY = {"Content-Type": NPY_MEDIA_TYPE}
LIMIT = 2 * 1024 * 1024  # a small body limit so the 413 test stays cheap


def windows(b: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    """The real app with the tiny preset (loaded in the app's lifespan, as in production)."""
    settings = EncoderSettings(
        preset="tiny",
        store=str(tmp_path_factory.mktemp("store")),
        device="cpu",
        threads=1,
        max_batch=8,
        max_wait_ms=2.0,
        max_body_bytes=LIMIT,
    )
    app = create_app(settings)
    with run_server(app, startup_timeout=120) as url:
        yield url, app


def post_npy(url: str, arr: np.ndarray, **headers) -> httpx.Response:
    return httpx.post(f"{url}/encode", content=to_npy_bytes(arr), headers={**NPY, **headers}, timeout=60)


def test_healthz_and_info(tiny_server):
    url, _ = tiny_server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    info = httpx.get(f"{url}/info").json()
    assert set(info) >= {"encoder_id", "model", "dim", "frames", "image_size", "dtype", "device", "max_batch"}
    assert (info["dim"], info["frames"], info["image_size"], info["dtype"], info["max_batch"]) == (
        96,
        8,
        128,
        "float32",
        8,
    )


def test_encode_json_and_npy_equal_in_process(tiny_server, tiny_encoder):
    url, _ = tiny_server
    w = windows(3, 64)
    r = post_npy(url, w)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["encoder_id"] == tiny_encoder.encoder_id and body["dim"] == 96
    emb = np.array(body["embeddings"], np.float32)
    assert emb.shape == (3, 96)
    expected = tiny_encoder.encode(w)
    np.testing.assert_allclose(emb, expected, rtol=1e-4, atol=1e-5)
    r = post_npy(url, w, Accept=NPY_MEDIA_TYPE)
    assert r.headers["content-type"].startswith(NPY_MEDIA_TYPE) and r.headers["x-encoder-id"] == body["encoder_id"]
    npy = from_npy_bytes(r.content)
    assert npy.dtype == np.float32 and npy.shape == (3, 96)
    np.testing.assert_allclose(npy, expected, rtol=1e-4, atol=1e-5)
    one = from_npy_bytes(post_npy(url, w[1], Accept=NPY_MEDIA_TYPE).content)  # one window (8, H, W, 3)
    assert one.shape == (1, 96)
    np.testing.assert_allclose(one[0], expected[1], rtol=1e-4, atol=1e-5)


def _object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


BAD_INPUTS = [
    ("wrong ndim", to_npy_bytes(np.zeros((8, 32, 3), np.uint8)), 422, "ndim"),
    ("wrong frames", to_npy_bytes(np.zeros((1, 7, 32, 32, 3), np.uint8)), 422, "frames"),
    ("not RGB", to_npy_bytes(np.zeros((1, 8, 32, 32, 4), np.uint8)), 422, "RGB"),
    ("float dtype", to_npy_bytes(np.zeros((1, 8, 32, 32, 3), np.float32)), 422, "uint8"),
    ("not npy", b'{"frames": [1, 2, 3]}', 400, ".npy"),
    ("truncated", to_npy_bytes(np.zeros((1, 8, 32, 32, 3), np.uint8))[:-100], 400, "truncated"),
    ("pickled object", _object_npy(), 400, "object"),
    ("empty batch", to_npy_bytes(np.zeros((0, 8, 32, 32, 3), np.uint8)), 422, "empty batch"),
    ("empty body", b"", 400, "empty body"),
    ("over the limit", to_npy_bytes(np.zeros((1, 8, 512, 512, 3), np.uint8)), 413, "too large"),
]


@pytest.mark.parametrize("label,body,code,needle", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_4xx_naming_the_problem_and_the_service_keeps_serving(tiny_server, label, body, code, needle):
    url, _ = tiny_server
    r = httpx.post(f"{url}/encode", content=body, headers=NPY, timeout=60)
    assert r.status_code == code, r.text
    assert needle.lower() in r.json()["detail"].lower()
    assert post_npy(url, windows(1)).status_code == 200


def test_body_over_the_limit_without_content_length(tiny_server):
    """A chunked upload has no Content-Length: the limit is enforced on the bytes actually read."""
    url, _ = tiny_server
    data = to_npy_bytes(np.zeros((1, 8, 512, 512, 3), np.uint8))

    def chunks():
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    r = httpx.post(f"{url}/encode", content=chunks(), headers=NPY, timeout=60)
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert post_npy(url, windows(1)).status_code == 200


def test_wrong_content_type_and_unknown_dataset(tiny_server):
    url, _ = tiny_server
    r = httpx.post(f"{url}/encode", json={"frames": []})
    assert r.status_code == 415 and NPY_MEDIA_TYPE in r.json()["detail"]
    for r in (
        httpx.post(f"{url}/datasets/no-such-dataset/encode"),
        httpx.get(f"{url}/datasets/no-such-dataset/encode"),
    ):
        assert r.status_code == 404 and "unknown dataset" in r.json()["detail"]
    r = httpx.get(f"{url}/datasets/bad%20name!/encode")
    assert r.status_code == 422 and "invalid dataset name" in r.json()["detail"]
    assert post_npy(url, windows(1)).status_code == 200


def test_metrics_in_prometheus_format(tiny_server):
    url, _ = tiny_server
    post_npy(url, windows(2))
    text = httpx.get(f"{url}/metrics").text
    for name in (
        "vjepa_encoder_requests_total",
        "vjepa_encoder_batch_size_bucket",
        "vjepa_encoder_queue_depth",
        "vjepa_encoder_request_latency_seconds_bucket",
    ):
        assert name in text, name
    assert 'route="/encode",status="200"' in text


def test_dataset_encoding_is_idempotent_with_lineage(tiny_dataset, tiny_encoder):
    from vjepa_robot_client import EncoderClient

    store, name, frames = tiny_dataset
    app = create_app(EncoderSettings(store=store.uri, max_batch=16, max_wait_ms=1.0), encoder=tiny_encoder)
    with run_server(app) as url, EncoderClient(url) as client:
        status = client.encode_dataset_and_wait(name, batch_size=4, poll_interval=0.1, timeout=120)
        assert (status.status, status.done, status.total, status.encoder_id) == (
            "done",
            30,
            30,
            tiny_encoder.encoder_id,
        )
        table = store.open(embeddings_table_name(name, tiny_encoder.encoder_id)).to_arrow()
        assert table.num_rows == 30
        for col in ("dataset", "episode", "step", "encoder_id", "embedding", "model", "preprocessing", "created_at"):
            assert col in table.column_names and table.column(col).null_count == 0, col
        assert set(table.column("encoder_id").to_pylist()) == {tiny_encoder.encoder_id}
        assert set(table.column("preprocessing").to_pylist()) == {tiny_encoder.preprocessing}
        # each row is the embedding of the 8-frame window ending at its step (episode start padded with frame 0)
        ep, st, emb = store.read_embeddings(name, tiny_encoder.encoder_id)
        for i in (0, 3, 29):
            window = window_at(frames[int(ep[i])], int(st[i]))[None]
            np.testing.assert_allclose(emb[i], tiny_encoder.encode(window)[0], rtol=1e-4, atol=1e-5)
        # twice: still one row per step
        again = client.encode_dataset_and_wait(name, batch_size=4, poll_interval=0.1, timeout=120)
        assert (again.status, again.done, again.total) == ("done", 30, 30)
        ep, st, _ = store.read_embeddings(name, tiny_encoder.encoder_id)
        assert len(ep) == 30 and len(set(zip(ep.tolist(), st.tolist()))) == 30


def test_toy_model_receives_real_batches_under_concurrency(tmp_path):
    toy = ToyEncoder(assert_batch_gt=1)
    app = create_app(EncoderSettings(store=str(tmp_path), max_batch=4, max_wait_ms=1000), encoder=toy)

    async def fire(url):
        async with httpx.AsyncClient(timeout=30) as client:
            reqs = [
                client.post(f"{url}/encode", content=to_npy_bytes(windows(1, seed=i)), headers=NPY) for i in range(8)
            ]
            return await asyncio.gather(*reqs)

    with run_server(app) as url:
        responses = asyncio.run(fire(url))
        assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
        assert toy.batch_sizes and all(b > 1 for b in toy.batch_sizes)
        text = httpx.get(f"{url}/metrics").text
        assert "vjepa_encoder_batch_size_count 2.0" in text


def test_an_error_in_a_batch_reaches_every_caller(tmp_path):
    toy = ToyEncoder(fail=True)
    app = create_app(EncoderSettings(store=str(tmp_path), max_batch=8, max_wait_ms=300), encoder=toy)

    async def fire(url):
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(client.post(f"{url}/encode", content=to_npy_bytes(windows(1)), headers=NPY) for _ in range(3))
            )

    with run_server(app) as url:
        responses = asyncio.run(fire(url))
        assert [r.status_code for r in responses] == [500] * 3
        assert all("exploded" in r.json()["detail"] for r in responses)
        toy.fail = False
        assert post_npy(url, windows(1)).status_code == 200


def test_full_queue_is_503_with_retry_after(tmp_path):
    gate = threading.Event()
    toy = ToyEncoder(block=gate)
    app = create_app(EncoderSettings(store=str(tmp_path), max_batch=1, max_wait_ms=0, max_queue=1), encoder=toy)
    with run_server(app) as url:
        results = {}

        def send(key):
            results[key] = post_npy(url, windows(1))

        threads = [threading.Thread(target=send, args=(k,)) for k in ("busy", "queued")]
        threads[0].start()
        time.sleep(0.3)  # "busy" is in the (blocked) forward pass
        threads[1].start()
        time.sleep(0.3)  # "queued" fills the queue
        r = post_npy(url, windows(1))
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "queue is full" in r.json()["detail"]
        gate.set()
        for t in threads:
            t.join(10)
        assert results["busy"].status_code == 200 and results["queued"].status_code == 200


def test_bearer_token_guards_everything_but_healthz(tmp_path):
    app = create_app(EncoderSettings(store=str(tmp_path), token="s3cret"), encoder=ToyEncoder())
    with run_server(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.get(f"{url}/info", headers=headers)
            assert r.status_code == 401 and "token" in r.json()["detail"]
        assert post_npy(url, windows(1)).status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{url}/info", headers=ok).status_code == 200
        assert post_npy(url, windows(1), **ok).status_code == 200


def test_token_file_and_env_settings(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("VJEPA_ROBOT_MAX_BATCH", "7")
    monkeypatch.setenv("VJEPA_ROBOT_MAX_WAIT_MS", "3.5")
    monkeypatch.setenv("VJEPA_ROBOT_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("VJEPA_ROBOT_PRESET", "tiny")
    monkeypatch.setenv("VJEPA_ROBOT_STORE", str(tmp_path / "s"))
    monkeypatch.setenv("VJEPA_ROBOT_TOKEN_FILE", str(token_file))
    monkeypatch.delenv("VJEPA_ROBOT_TOKEN", raising=False)
    s = EncoderSettings()
    assert (s.max_batch, s.max_wait_ms, s.max_body_bytes, s.preset, s.store) == (
        7,
        3.5,
        1000,
        "tiny",
        str(tmp_path / "s"),
    )
    assert s.resolved_token() == "from-file"
    monkeypatch.setenv("VJEPA_ROBOT_TOKEN", "from-env")
    assert EncoderSettings().resolved_token() == "from-env"
    with pytest.raises(ValueError, match="not both"):
        EncoderSettings(preset="tiny", model="/some/dir")
    from services.encoder.server import app_from_env

    assert app_from_env().state.settings.max_batch == 7


def test_encode_and_wait_raises_when_the_dataset_job_fails(tiny_dataset):
    """The SDK's one encode-and-wait: a job that fails on the service raises DatasetEncodeFailed with its error."""
    from vjepa_robot_client import DatasetEncodeFailed, EncoderClient, NotFound

    store, name, _ = tiny_dataset
    app = create_app(EncoderSettings(store=store.uri, max_batch=4, max_wait_ms=1.0), encoder=ToyEncoder(fail=True))
    with run_server(app) as url, EncoderClient(url) as client:
        with pytest.raises(DatasetEncodeFailed, match="toy forward pass exploded"):
            client.encode_dataset_and_wait(name, batch_size=4, poll_interval=0.1, timeout=60)
        with pytest.raises(NotFound):
            client.encode_dataset_and_wait("no-such-dataset", poll_interval=0.1, timeout=60)

        async def the_async_twin():
            from vjepa_robot_client import AsyncEncoderClient

            async with AsyncEncoderClient(url) as aclient:
                await aclient.encode_dataset_and_wait(name, batch_size=4, poll_interval=0.1, timeout=60)

        with pytest.raises(DatasetEncodeFailed, match="toy forward pass exploded"):
            asyncio.run(the_async_twin())
