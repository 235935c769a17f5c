"""Token grids (issue 17 item 1): pool=grid from the model, the store, the service, streams, the SDK and the CLI.

The encoder is the tiny random-init preset (a stand-in: 128 px crops -> a 4 x 8 x 8 token grid of 96-d tokens).
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from conftest import ToyEncoder, run_server, write_steps_dataset

from services.common.store import EmbeddingLineage, Store, embeddings_table_name
from services.encoder.app import create_app
from services.encoder.model import Encoder, make_encoder_id, preprocess, tiny_config_kwargs
from services.encoder.settings import EncoderSettings
from vjepa_robot_client.contract import (
    EMBEDDING_DTYPE_HEADER,
    MEAN_POOLING,
    NPY_MEDIA_TYPE,
    PoolingSpec,
    from_npy_bytes,
    pooled_encoder_id,
    to_npy_bytes,
    validate_name,
)
from vjepa_robot_client.window import window_at

NPY = {"Content-Type": NPY_MEDIA_TYPE, "Accept": NPY_MEDIA_TYPE}
GRID4 = PoolingSpec.of("grid", 4)
GRID4_F32 = PoolingSpec.of("grid", 4, dtype="float32")


def windows(b: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


def hidden(enc: Encoder, w: np.ndarray) -> torch.Tensor:
    """(B, N, D) float32 last_hidden_state, straight from transformers (the reference for the pooling tests)."""
    with torch.inference_mode():
        pixels = preprocess(torch.from_numpy(w), enc.image_size)
        return enc.model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state.float()


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


def test_tokens_are_ordered_t_h_w_like_the_patch_embedding(tiny_encoder):
    """transformers' VJEPA2PatchEmbeddings3D: Conv3d(kernel=stride=(2, 16, 16)) then flatten(2).transpose(1, 2), so
    token n is (t, h, w) in C order: reshaping to (T', h, w, D) must give the conv's own (t, h, w) layout."""
    enc = tiny_encoder
    assert enc.token_grid == (4, 8, 8)
    with torch.inference_mode():
        pixels = preprocess(torch.from_numpy(windows(2, 128)), enc.image_size)
        emb = enc.model.encoder.embeddings(pixels)  # (B, N, D): what the transformer blocks receive
        conv = enc.model.encoder.embeddings.patch_embeddings.proj(pixels.permute(0, 2, 1, 3, 4))  # (B, D, T', h, w)
    torch.testing.assert_close(emb.reshape(2, 4, 8, 8, -1), conv.permute(0, 2, 3, 4, 1))


def test_grid_shapes_dtypes_and_values(tiny_encoder):
    enc, w = tiny_encoder, windows(3, 64)
    g4 = enc.encode(w, GRID4)
    assert g4.shape == (3, 16, 96) and g4.dtype == np.float16 and np.isfinite(g4).all()
    g4_32 = enc.encode(w, GRID4_F32)
    assert g4_32.dtype == np.float32
    np.testing.assert_array_equal(g4, g4_32.astype(np.float16))  # float16 is the float32 answer, rounded
    # by hand: (B, 4, 8, 8, D) -> mean over T' -> 2 x 2 blocks averaged -> row-major tokens
    ref = hidden(enc, w).reshape(3, 4, 8, 8, 96).mean(1).reshape(3, 4, 2, 4, 2, 96).mean((2, 4)).reshape(3, 16, 96)
    np.testing.assert_allclose(g4_32, ref.numpy(), rtol=1e-5, atol=1e-5)
    assert enc.encode(w, PoolingSpec.of("grid", 3)).shape == (3, 9, 96)  # adaptive: g need not divide 8
    assert enc.encode(w[:0], GRID4).shape == (0, 16, 96)


@pytest.mark.parametrize("g", [1, 2, 4, 8])
def test_uniform_grid_mean_is_the_mean_embedding(tiny_encoder, g):
    """When g divides the 8 x 8 token grid the pooling is uniform: the mean of the g*g tokens is the mean over all
    tokens, i.e. today's embedding (g = 1 is that embedding itself)."""
    w = windows(2, 64, seed=g)
    grid = tiny_encoder.encode(w, PoolingSpec.of("grid", g, dtype="float32"))
    np.testing.assert_allclose(grid.mean(axis=1), tiny_encoder.encode(w), rtol=1e-5, atol=1e-6)


def test_time_last_and_layers(tiny_encoder):
    enc, w = tiny_encoder, windows(2, 64, seed=3)
    last = enc.encode(w, PoolingSpec.of("grid", 4, time="last", dtype="float32"))
    ref = hidden(enc, w).reshape(2, 4, 8, 8, 96)[:, -1].reshape(2, 4, 2, 4, 2, 96).mean((2, 4)).reshape(2, 16, 96)
    np.testing.assert_allclose(last, ref.numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(last - enc.encode(w, GRID4_F32)).max() > 1e-3  # the choice matters
    # the last block through the final LayerNorm is the last hidden state
    np.testing.assert_allclose(
        enc.encode(w, PoolingSpec.of("grid", 4, layers=[1], dtype="float32")),
        enc.encode(w, GRID4_F32),
        rtol=1e-6,
        atol=1e-6,
    )
    both = enc.encode(w, PoolingSpec.of("grid", 4, layers=[0, 1], dtype="float32"))
    assert both.shape == (2, 16, 192)
    np.testing.assert_allclose(both[..., 96:], enc.encode(w, GRID4_F32), rtol=1e-6, atol=1e-6)
    assert np.abs(both[..., :96] - both[..., 96:]).max() > 1e-3


def test_mean_is_unchanged_byte_for_byte(tiny_encoder):
    """pool=mean (or no pooling) is the code path from before grids: the mean over tokens of last_hidden_state."""
    w = windows(3, 64, seed=5)
    today = hidden(tiny_encoder, w).mean(dim=1).numpy()
    for emb in (tiny_encoder.encode(w), tiny_encoder.encode(w, None), tiny_encoder.encode(w, MEAN_POOLING)):
        assert emb.dtype == np.float32 and emb.tobytes() == today.tobytes()


def test_refusals_name_the_limits(tiny_encoder):
    with pytest.raises(ValueError, match=r"grid_size 9 is larger than this encoder's 8x8 token grid.*1\.\.8"):
        tiny_encoder.encode(windows(1), PoolingSpec.of("grid", 9))
    with pytest.raises(ValueError, match=r"layers \[2\] out of range.*2 blocks"):
        tiny_encoder.check_pooling(PoolingSpec.of("grid", 4, layers=[2]))
    with pytest.raises(ValueError, match="layers apply to pool=grid only"):
        PoolingSpec.of("mean", layers=[1])
    with pytest.raises(ValueError, match="float32 only"):
        PoolingSpec.of("mean", dtype="float16")
    with pytest.raises(ValueError, match="'mean' or 'grid'"):
        PoolingSpec.of("max")


def test_ids_differ_per_pooling_and_mean_keeps_the_base_id(tiny_encoder):
    enc = tiny_encoder
    assert enc.encoder_id_for(None) == enc.encoder_id_for(MEAN_POOLING) == enc.encoder_id
    specs = [
        GRID4,
        PoolingSpec.of("grid", 8),
        GRID4_F32,
        PoolingSpec.of("grid", 4, time="last"),
        PoolingSpec.of("grid", 4, layers=[0, 1]),
    ]
    ids = [enc.encoder_id_for(s) for s in specs]
    assert len(set(ids + [enc.encoder_id])) == len(specs) + 1
    for i in ids:
        assert i.startswith(enc.encoder_id + "-grid") and validate_name(i, "encoder id")
    assert ids[0] == f"{enc.encoder_id}-grid4-tmean" == pooled_encoder_id(enc.encoder_id, "grid", 4)
    assert pooled_encoder_id(enc.encoder_id) == enc.encoder_id
    lin = enc.lineage(PoolingSpec.of("grid", 4, layers=[0, 1]))
    assert (
        lin["pooling"],
        lin["grid_size"],
        lin["time_reduction"],
        lin["layers"],
        lin["dim"],
        lin["tokens"],
        lin["embedding_dtype"],
        lin["random_init"],
    ) == ("grid", 4, "mean", [0, 1], 192, 16, "float16", True)


def test_random_init_is_set_where_the_encoder_is_loaded(tiny_encoder, tiny_encoder_dir):
    from transformers import VJEPA2Config

    assert tiny_encoder.random_init is True and tiny_encoder.info()["random_init"] is True
    # the flag is set after the preset's config hash: the preset's encoder id is what it was before the flag
    import hashlib

    cfg = VJEPA2Config(**tiny_config_kwargs()).to_json_string(use_diff=False)
    source = f"random-init:tiny:seed0:{hashlib.sha256(cfg.encode()).hexdigest()[:12]}"
    assert tiny_encoder.encoder_id == make_encoder_id(source, None, tiny_encoder.preprocessing, "float32")
    saved = Encoder.load(str(tiny_encoder_dir), device="cpu", num_threads=1)
    assert saved.random_init is True  # a saved stand-in is still named one
    plain = Encoder(saved.model, source="x", revision=None, name="x", device="cpu", dtype=torch.float32)
    assert plain.random_init is False  # a checkpoint is pretrained unless its loader says otherwise


# ----------------------------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------------------------


def test_store_grid_round_trip_shape_progress_and_streaming(tmp_path):
    store = Store(str(tmp_path / "s"))
    write_steps_dataset(store, "d", episodes=3, steps=5, image_size=8)
    rng = np.random.default_rng(0)
    grid = EmbeddingLineage(
        "enc-a-grid4-tmean",
        "stand-in",
        "none",
        6,
        tokens=16,
        dtype="float16",
        details={"pooling": "grid", "grid_size": 4, "random_init": True},
    )
    mean = EmbeddingLineage("enc-a", "stand-in", "none", 6)
    rows = {ep: rng.normal(size=(5, 16, 6)).astype(np.float16) for ep in range(3)}
    assert not store.embedding_progress("d", grid.encoder_id).complete
    for ep in (0, 2, 1):
        store.append_embeddings("d", ep, np.arange(5), rows[ep], grid)
        store.append_embeddings("d", ep, np.arange(5), rows[ep].mean(1).astype(np.float32), mean)
    assert store.embedding_progress("d", grid.encoder_id).complete and store.embedding_progress("d", "enc-a").complete
    assert store.embedding_shape("d", grid.encoder_id) == (16, 6) and store.embedding_shape("d", "enc-a") == (6,)
    ep, st, x = store.read_embeddings("d", grid.encoder_id)
    assert x.shape == (15, 16, 6) and x.dtype == np.float32 and list(ep) == [0] * 5 + [1] * 5 + [2] * 5
    np.testing.assert_array_equal(x, np.concatenate([rows[e] for e in range(3)]).astype(np.float32))
    assert store.read_embeddings("d", grid.encoder_id, dtype=None)[2].dtype == np.float16
    assert store.read_embeddings("d", "enc-a")[2].shape == (15, 6)
    ep2, _, x2 = store.read_embeddings("d", grid.encoder_id, episodes=[2])
    assert set(ep2.tolist()) == {2} and x2.shape == (5, 16, 6)
    chunks = list(store.iter_embeddings("d", grid.encoder_id, batch_rows=4))
    assert all(c[2].shape[1:] == (16, 6) and len(c[0]) <= 4 for c in chunks) and sum(len(c[0]) for c in chunks) == 15
    assert store.embedding_lineage("d", grid.encoder_id)["random_init"] is True
    # one id, one row shape: a (5, 9, 6) episode cannot join the g = 4 table
    with pytest.raises(ValueError, match="expected"):
        store.append_embeddings("d", 3, np.arange(5), np.zeros((5, 9, 6), np.float16), grid)
    other = EmbeddingLineage(grid.encoder_id, "stand-in", "none", 6, tokens=9, dtype="float16")
    with pytest.raises(ValueError, match="one encoder id, one row shape"):
        store.append_embeddings("d", 3, np.arange(5), np.zeros((5, 9, 6), np.float16), other)


# ----------------------------------------------------------------------------------------------------------------
# The service, the SDK, the CLI
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_server(tmp_path_factory, tiny_encoder):
    store = Store(str(tmp_path_factory.mktemp("grid-store")))
    frames = write_steps_dataset(store, "grid-ds", episodes=2, steps=6, image_size=32)
    app = create_app(EncoderSettings(store=store.uri, max_batch=8, max_wait_ms=1.0), encoder=tiny_encoder)
    with run_server(app) as url:
        yield url, store, frames


def test_info_lists_poolings_and_random_init(grid_server):
    info = httpx.get(f"{grid_server[0]}/info").json()
    assert info["poolings"] == ["mean", "grid"] and info["random_init"] is True
    assert info["token_grid"] == [4, 8, 8] and info["layers"] == 2


def test_encode_grid_over_http(grid_server, tiny_encoder):
    url, w = grid_server[0], windows(3)
    r = httpx.post(f"{url}/encode", params={"pool": "grid", "grid_size": 4}, content=to_npy_bytes(w), headers=NPY)
    assert r.status_code == 200, r.text
    assert r.headers[EMBEDDING_DTYPE_HEADER] == "float16"
    assert r.headers["x-encoder-id"] == f"{tiny_encoder.encoder_id}-grid4-tmean"
    got = from_npy_bytes(r.content)
    assert got.shape == (3, 16, 96) and got.dtype == np.float16
    np.testing.assert_array_equal(got, tiny_encoder.encode(w, GRID4))
    j = httpx.post(
        f"{url}/encode",
        params={"pool": "grid", "grid_size": 2, "dtype": "float32", "layers": "0,1"},
        content=to_npy_bytes(w),
        headers={"Content-Type": NPY_MEDIA_TYPE},
    ).json()
    assert j["shape"] == [3, 4, 192] and j["pooling"] == "grid2-tmean-l0_1-f32" and j["dim"] == 192
    np.testing.assert_allclose(
        np.array(j["embeddings"], np.float32),
        tiny_encoder.encode(w, PoolingSpec.of("grid", 2, layers=[0, 1], dtype="float32")),
        rtol=1e-6,
        atol=1e-6,
    )


def test_mean_answers_unchanged_over_http(grid_server):
    url, body = grid_server[0], to_npy_bytes(windows(2))
    for headers in (NPY, {"Content-Type": NPY_MEDIA_TYPE}):  # .npy and JSON modes
        plain = httpx.post(f"{url}/encode", content=body, headers=headers)
        explicit = httpx.post(f"{url}/encode", params={"pool": "mean", "grid_size": 8}, content=body, headers=headers)
        assert plain.status_code == explicit.status_code == 200
        assert plain.content == explicit.content
    assert plain.headers.get("x-pooling") is None


@pytest.mark.parametrize(
    "params, words",
    [
        ({"pool": "max"}, ["unknown pool 'max'", "mean, grid"]),
        ({"pool": "grid", "grid_size": 9}, ["grid_size 9", "8x8 token grid", "1..8"]),
        ({"pool": "grid", "layers": "5"}, ["layers [5] out of range"]),
        ({"pool": "grid", "layers": "a,b"}, ["'a' is not a block index"]),
        ({"pool": "grid", "dtype": "bfloat16"}, ["unknown dtype", "float16, float32"]),
        ({"pool": "grid", "time": "first"}, ["unknown time reduction", "mean, last"]),
        ({"pool": "mean", "layers": "1"}, ["pool=grid only"]),
        ({"pool": "grid", "grid_size": 0}, ["grid_size"]),
    ],
)
def test_bad_poolings_are_422_naming_the_choices(grid_server, params, words):
    url = grid_server[0]
    r = httpx.post(f"{url}/encode", params=params, content=to_npy_bytes(windows(1)), headers=NPY)
    assert r.status_code == 422, r.text
    for word in words:
        assert word in r.text, (word, r.text)
    assert httpx.post(f"{url}/encode", content=to_npy_bytes(windows(1)), headers=NPY).status_code == 200  # serving
    s = httpx.post(f"{url}/streams", json={"envs": 1, "height": 8, "width": 8, **params})
    assert s.status_code == 422, s.text


def test_sdk_encode_and_grid_stream(grid_server, tiny_encoder):
    from vjepa_robot_client import EncoderClient

    url = grid_server[0]
    rng = np.random.default_rng(7)
    with EncoderClient(url) as client:
        w = windows(2)
        np.testing.assert_array_equal(client.encode(w, pool="grid", grid_size=4), tiny_encoder.encode(w, GRID4))
        assert client.last_encoder_id == tiny_encoder.encoder_id_for(GRID4)
        with pytest.raises(ValueError, match="pool=grid only"):
            client.encode(w, pool="mean", layers=[1])  # refused before anything is sent
        with (
            client.stream(envs=2, height=32, width=32, pool="grid", grid_size=4) as s,
            client.stream(envs=2, height=32, width=32) as m,
        ):
            assert s.encoder_id == tiny_encoder.encoder_id_for(GRID4) and m.encoder_id == tiny_encoder.encoder_id
            for step in range(3):
                frames = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
                reset = [1] if step == 2 else None
                got, mean = s.step(frames, reset=reset), m.step(frames, reset=reset)
                assert got.shape == (2, 16, 96) and got.dtype == np.float16 and mean.shape == (2, 96)
                np.testing.assert_array_equal(got, tiny_encoder.encode(s.buffer.windows.copy(), GRID4))
            # a lost stream is re-created with its pooling and resynchronised with full windows
            httpx.delete(f"{url}/streams/{s.stream_id}")
            frames = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
            got = s.step(frames)
            assert s.resyncs == 1 and got.shape == (2, 16, 96)
            np.testing.assert_array_equal(got, tiny_encoder.encode(s.buffer.windows.copy(), GRID4))
            # behind a router without affinity the stream goes stateless: full windows to POST /encode, still grids
            s.stateless = True
            got = s.step(rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8))
            assert got.shape == (2, 16, 96) and got.dtype == np.float16
            np.testing.assert_array_equal(got, tiny_encoder.encode(s.buffer.windows.copy(), GRID4))


def test_dataset_encode_stores_grids_through_the_service(grid_server, tiny_encoder):
    from vjepa_robot_client import EncoderClient

    url, store, frames = grid_server
    grid_id = pooled_encoder_id(tiny_encoder.encoder_id, "grid", 4)
    with EncoderClient(url) as client:
        status = client.encode_dataset_and_wait(
            "grid-ds", batch_size=4, pool="grid", grid_size=4, poll_interval=0.1, timeout=120
        )
        assert (status.status, status.done, status.total, status.encoder_id) == ("done", 12, 12, grid_id)
        # the mean rows are a separate job and table: nothing mixes
        assert client.dataset_encode_status("grid-ds").status == "idle"
        assert client.dataset_encode_status("grid-ds", pool="grid", grid_size=4).status == "done"
        assert client.dataset_encode_status("grid-ds", pool="grid", grid_size=2).status == "idle"
        mean = client.encode_dataset_and_wait("grid-ds", batch_size=4, poll_interval=0.1, timeout=120)
        assert (mean.status, mean.encoder_id) == ("done", tiny_encoder.encoder_id)
    ep, st, x = store.read_embeddings("grid-ds", grid_id)
    assert x.shape == (12, 16, 96) and store.embedding_shape("grid-ds", grid_id) == (16, 96)
    for i in (0, 5, 11):
        window = window_at(frames[int(ep[i])], int(st[i]))[None]
        np.testing.assert_array_equal(x[i], tiny_encoder.encode(window, GRID4)[0].astype(np.float32))
    assert store.read_embeddings("grid-ds", tiny_encoder.encoder_id)[2].shape == (12, 96)
    table = store.open(embeddings_table_name("grid-ds", grid_id)).to_arrow()
    assert set(table.column("encoder_id").to_pylist()) == {grid_id}
    lin = store.embedding_lineage("grid-ds", grid_id)
    assert (lin["base_encoder_id"], lin["pooling"], lin["grid_size"], lin["time_reduction"], lin["random_init"]) == (
        tiny_encoder.encoder_id,
        "grid",
        4,
        "mean",
        True,
    )
    # grid_size too large for the token grid: 422 before any job starts
    r = httpx.post(f"{url}/datasets/grid-ds/encode", json={"pool": "grid", "grid_size": 16})
    assert r.status_code == 422 and "token grid" in r.text


def test_cli_datasets_encode_with_grids(grid_server, tiny_encoder):
    from typer.testing import CliRunner

    from vjepa_robot.cli import app

    url = grid_server[0]
    result = CliRunner().invoke(
        app, ["datasets", "encode", "grid-ds", "--encoder-url", url, "--pool", "grid", "--grid-size", "2"]
    )
    assert result.exit_code == 0, result.output
    assert tiny_encoder.encoder_id_for(PoolingSpec.of("grid", 2)) in result.output
    assert grid_server[1].embedding_shape("grid-ds", f"{tiny_encoder.encoder_id}-grid2-tmean") == (4, 96)


def test_an_encoder_without_grids_refuses_them(tmp_path):
    """An encoder that serves mean only (the ToyEncoder: no token grid) answers grid requests 422, keeps serving."""
    app = create_app(EncoderSettings(store=str(tmp_path)), encoder=ToyEncoder())
    with run_server(app) as url:
        assert httpx.get(f"{url}/info").json()["poolings"] == ["mean"]
        r = httpx.post(f"{url}/encode", params={"pool": "grid"}, content=to_npy_bytes(windows(1)), headers=NPY)
        assert r.status_code == 422 and "serves pool=mean only" in r.text
        assert httpx.post(f"{url}/encode", content=to_npy_bytes(windows(1)), headers=NPY).status_code == 200


def test_async_sdk_grids(grid_server, tiny_encoder):
    import asyncio

    from vjepa_robot_client import AsyncEncoderClient

    async def go():
        async with AsyncEncoderClient(grid_server[0]) as client:
            w = windows(2, seed=11)
            g = await client.encode(w, pool="grid", grid_size=2, dtype="float32")
            s = await client.stream(2, 32, 32, pool="grid", grid_size=2)
            try:
                step = await s.step(w[:, -1])
            finally:
                await s.close()
            return w, g, step, s.buffer.windows.copy()

    w, g, step, buf = asyncio.run(go())
    np.testing.assert_array_equal(g, tiny_encoder.encode(w, PoolingSpec.of("grid", 2, dtype="float32")))
    assert step.shape == (2, 4, 96) and step.dtype == np.float16
    np.testing.assert_array_equal(step, tiny_encoder.encode(buf, PoolingSpec.of("grid", 2)))
