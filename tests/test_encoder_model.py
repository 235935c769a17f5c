"""The encoder model: shapes, determinism, preprocessing, encoder ids, the real from_pretrained path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from services.encoder.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    load_encoder,
    make_encoder_id,
    preprocess,
    preprocessing_spec,
)
from vjepa_robot_client.contract import validate_name


def windows(b: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


def test_shapes_and_dtypes(tiny_encoder):
    enc = tiny_encoder
    assert (enc.dim, enc.frames, enc.image_size, enc.dtype, enc.device) == (96, 8, 128, "float32", "cpu")
    for size in (enc.image_size, 256, 40):  # at crop size, the renders' size, and some other size (resized)
        emb = enc.encode(windows(2, size))
        assert emb.shape == (2, enc.dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(windows(1, 32).astype(np.float32))


def test_same_window_same_embedding_different_windows_differ(tiny_encoder):
    w = windows(3, 64)
    a, b = tiny_encoder.encode(w), tiny_encoder.encode(w)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(tiny_encoder.encode(w[1:2])[0], a[1], rtol=1e-4, atol=1e-5)  # batching is neutral
    assert np.abs(a[0] - a[1]).max() > 1e-3 and np.abs(a[1] - a[2]).max() > 1e-3


def test_preprocessing_matches_video_processor_normalisation():
    """At crop size the resize is skipped; what remains must be the processor's rescale + ImageNet normalisation."""
    # VJEPA2VideoProcessor sets image_mean/std = IMAGENET_DEFAULT_MEAN/STD and rescales by 1/255
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    w = windows(2, 16)
    ours = preprocess(torch.from_numpy(w), 16).numpy()  # (B, T, 3, S, S)
    assert tuple(IMAGENET_DEFAULT_MEAN) == IMAGENET_MEAN and tuple(IMAGENET_DEFAULT_STD) == IMAGENET_STD
    mean, std = np.array(IMAGENET_DEFAULT_MEAN, np.float32), np.array(IMAGENET_DEFAULT_STD, np.float32)
    ref = (w.astype(np.float32) * np.float32(1 / 255) - mean) / std
    np.testing.assert_allclose(ours, ref.transpose(0, 1, 4, 2, 3), rtol=1e-5, atol=1e-5)
    try:  # the full processor needs torchvision, which this project does not install
        import torchvision  # noqa: F401
    except ImportError:
        return
    from transformers import VJEPA2VideoProcessor

    out = VJEPA2VideoProcessor(crop_size=16)(videos=list(w), do_resize=False, do_center_crop=False, return_tensors="pt")
    np.testing.assert_allclose(ours, out["pixel_values_videos"].numpy(), rtol=1e-4, atol=1e-4)


def test_resize_is_antialiased_not_cropped():
    """A 256x256 render is resized whole (no crop): a uniform frame stays uniform, a border stripe survives."""
    w = np.zeros((1, 8, 256, 256, 3), np.uint8)
    w[..., :, :8, :] = 255  # left border stripe: a centre crop would cut it off
    x = preprocess(torch.from_numpy(w), 128)
    assert x.shape == (1, 8, 3, 128, 128)
    assert x[0, 0, 0, :, 0].min() > 2.0  # still white after resizing (normalised white ~ 2.2)


def test_encoder_id_is_a_valid_name_and_covers_its_inputs(tiny_encoder):
    validate_name(tiny_encoder.encoder_id, "encoder id")
    pre = preprocessing_spec(128)
    base = make_encoder_id("facebook/vjepa2-vitl-fpc64-256", "main", pre, "bfloat16")
    assert len(base) == 12
    assert base != make_encoder_id("facebook/vjepa2-vitl-fpc64-256", "abc123", pre, "bfloat16")
    assert base != make_encoder_id("facebook/vjepa2-vitl-fpc64-256", "main", pre, "float32")
    assert base != make_encoder_id("facebook/vjepa2-vitl-fpc64-256", "main", preprocessing_spec(256), "bfloat16")


def test_from_pretrained_on_a_saved_tiny_model(tiny_encoder, tiny_encoder_dir):
    loaded = Encoder.load(str(tiny_encoder_dir), device="cpu", num_threads=1)
    assert loaded.dim == tiny_encoder.dim and loaded.image_size == tiny_encoder.image_size
    assert loaded.encoder_id != tiny_encoder.encoder_id  # a different source is a different encoder id
    validate_name(loaded.encoder_id, "encoder id")
    w = windows(2, 128)
    np.testing.assert_allclose(loaded.encode(w), tiny_encoder.encode(w), rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in loaded.model.parameters()) and not loaded.model.training
    with pytest.raises(OSError, match="cannot load"):
        load_encoder(model=str(tiny_encoder_dir / "missing"), device="cpu")


def test_tiny_preset_is_the_same_in_every_process(tiny_encoder):
    """The trainer's live eval and the dataset encoding load the preset in different processes: they must agree."""
    code = (
        "import json, numpy as np; from services.encoder.model import Encoder;"
        "e = Encoder.from_preset('tiny', device='cpu', num_threads=1);"
        "w = np.random.default_rng(0).integers(0, 256, size=(1, 8, 128, 128, 3), dtype=np.uint8);"
        "print(json.dumps({'id': e.encoder_id, 'emb': e.encode(w)[0].tolist()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    other = json.loads(out.stdout.strip().splitlines()[-1])
    assert other["id"] == tiny_encoder.encoder_id
    np.testing.assert_allclose(
        np.array(other["emb"], np.float32), tiny_encoder.encode(windows(1, 128))[0], rtol=1e-5, atol=1e-6
    )


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="vitl-random"):
        Encoder.from_preset("huge")


# -- torch.compile with bucketed batch sizes (--compile / VJEPA_ROBOT_COMPILE) ---------------------------------------


def _spy_compiled(enc: Encoder) -> list[int]:
    """Record the batch size of every call into the compiled graph."""
    sizes: list[int] = []
    compiled = enc._compiled

    def spy(pixels):
        sizes.append(int(pixels.shape[0]))
        return compiled(pixels)

    enc._compiled = spy
    return sizes


def test_compile_pads_batches_to_buckets_and_slices_back(tiny_encoder):
    """Dynamo traces the real model (backend "eager": no code generation, so this stays quick on a CPU); batches are
    padded to bucket sizes, larger ones run in chunks, and every window gets its own embedding back."""
    enc = Encoder.from_preset("tiny", device="cpu", num_threads=1).compile(buckets=(1, 4), backend="eager")
    sizes = _spy_compiled(enc)
    w = windows(6, 64, seed=3)
    want = tiny_encoder.encode(w)
    for b in (1, 3, 4, 6):
        got = enc.encode(w[:b])
        assert got.shape == (b, enc.dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, want[:b], rtol=1e-5, atol=1e-5)
    assert sizes == [1, 4, 4, 4, 4]  # 1 -> 1; 3 -> 4; 4 -> 4; 6 -> 4 + (2 padded to 4)
    assert [enc.bucket(n) for n in (1, 2, 3, 4)] == [1, 4, 4, 4]
    with pytest.raises(ValueError, match="positive"):
        Encoder.from_preset("tiny", device="cpu", num_threads=1).compile(buckets=(0, 2))


@pytest.mark.slow
def test_compiled_inductor_matches_eager(tiny_encoder):
    """The real thing on CPU: inductor generates and builds C++ kernels (~30 s of CPU the first time; cached after)."""
    enc = Encoder.from_preset("tiny", device="cpu", num_threads=1).compile(buckets=(4,), warmup_upto=4)
    w = windows(3, 64, seed=4)  # padded to 4: the graph compiled by the warm-up is reused
    np.testing.assert_allclose(enc.encode(w), tiny_encoder.encode(w), rtol=1e-4, atol=1e-4)


def test_compile_setting_from_the_environment(monkeypatch):
    from services.encoder.settings import EncoderSettings

    assert EncoderSettings().compile is False
    monkeypatch.setenv("VJEPA_ROBOT_COMPILE", "1")
    assert EncoderSettings().compile is True
