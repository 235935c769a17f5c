"""Backbone families (issue 18): V-JEPA 2, VideoMAE, DINOv2, SigLIP behind one Encoder. Every model here is a tiny
random-init stand-in (the presets tiny-*), or one saved with save_pretrained to a tmp dir: no hub here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.encoder.families import FAMILIES, UnknownFamily
from services.encoder.model import Encoder, load_encoder
from services.encoder.weights import WeightsError
from vjepa_robot_client.contract import PoolingSpec

TINY = {"vjepa2": "tiny", "videomae": "tiny-videomae", "dinov2": "tiny-dinov2", "siglip": "tiny-siglip"}


def windows(b: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def encoders():
    return {fam: Encoder.from_preset(preset, device="cpu", num_threads=1) for fam, preset in TINY.items()}


def test_every_family_encodes_windows_and_says_what_it_is(encoders):
    ids = set()
    for fam, enc in encoders.items():
        w = windows(3)
        emb = enc.encode(w)
        assert emb.shape == (3, enc.dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
        assert np.abs(emb[0] - emb[1]).max() > 1e-4  # different windows differ
        np.testing.assert_allclose(enc.encode(w[1:2])[0], emb[1], rtol=1e-4, atol=1e-5)  # batching is neutral
        info, lineage = enc.info(), enc.lineage()
        for d in (info, lineage):
            assert d["family"] == fam and d["random_init"] is True and d["dtype"] == "float32"
            assert d["fusion"] == ("video" if FAMILIES[fam].kind == "video" else "mean")
            assert d["token_pooling"] == FAMILIES[fam].token_pooling and d["weights"].startswith("random-init:")
        ids.add(enc.encoder_id)
    assert len(ids) == len(encoders)  # four families, four ids


def test_image_families_fuse_frames_as_recorded():
    """mean = the mean of the per-frame vectors; last = the newest frame alone; last3 = 3 frames concatenated."""
    mean = Encoder.from_preset("tiny-dinov2", device="cpu", num_threads=1)
    last = Encoder.from_preset("tiny-dinov2", device="cpu", num_threads=1, fusion="last")
    last3 = Encoder.from_preset("tiny-dinov2", device="cpu", num_threads=1, fusion="last3")
    assert len({mean.encoder_id, last.encoder_id, last3.encoder_id}) == 3  # the fusion is part of the id
    w = windows(2)
    per_frame = np.stack([last.encode(np.repeat(w[:, t : t + 1], 8, axis=1)) for t in range(8)], axis=1)  # (B, 8, D)
    np.testing.assert_allclose(mean.encode(w), per_frame.mean(axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last.encode(w), per_frame[:, -1], rtol=1e-4, atol=1e-5)
    assert last3.dim == 3 * mean.dim
    np.testing.assert_allclose(last3.encode(w), per_frame[:, -3:].reshape(2, -1), rtol=1e-4, atol=1e-5)
    # the image model sees one frame at a time: a frame's vector does not depend on the other frames
    w2 = w.copy()
    w2[:, :7] = 0
    np.testing.assert_allclose(last.encode(w2), last.encode(w), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="last3"):
        Encoder.from_preset("tiny-dinov2", device="cpu", num_threads=1, fusion="flare")
    with pytest.raises(ValueError, match="window whole"):
        Encoder.from_preset("tiny", device="cpu", num_threads=1, fusion="last3")


def test_grids_for_every_family(encoders):
    """pool=grid: image families' patch grids averaged over the 8 frames (time=mean) or the newest (time=last)."""
    w = windows(2)
    for enc in encoders.values():
        g = enc.encode(w, PoolingSpec.of("grid", 4))
        assert g.shape == (2, 16, enc.token_dim) and g.dtype == np.float16
        assert enc.lineage(PoolingSpec.of("grid", 4))["dim"] == enc.token_dim
        layered = enc.encode(w, PoolingSpec.of("grid", 2, "last", [0, 1]))
        assert layered.shape == (2, 4, 2 * enc.token_dim)
    # DINOv2's grid excludes its CLS token: 8 frames x 8 x 8 patches, and time=mean is the mean over the frames
    dino = encoders["dinov2"]
    assert dino.token_grid == (8, 8, 8)
    pixels = dino_pixels(dino, w)
    with torch.inference_mode():
        patches = dino.model(pixel_values=pixels.flatten(0, 1)).last_hidden_state[:, 1:]  # (B*8, 64, D)
    expected = patches.reshape(2, 8, 64, -1).mean(dim=1).numpy()
    got = dino.encode(w, PoolingSpec.of("grid", 8, dtype="float32"))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def dino_pixels(enc, w):
    from services.encoder.model import preprocess

    return preprocess(torch.from_numpy(w), enc.image_size, enc.family.mean, enc.family.std)


def test_a_saved_checkpoint_of_each_family_loads_with_its_family(tmp_path, encoders):
    w = windows(2)
    for fam, enc in encoders.items():
        path = tmp_path / fam
        enc.model.save_pretrained(path)
        loaded = load_encoder(model=str(path), device="cpu", num_threads=1)  # family from config.json
        assert loaded.family.name == fam and loaded.weights.startswith("sha256:")
        np.testing.assert_allclose(loaded.encode(w), enc.encode(w), rtol=1e-5, atol=1e-6)
        assert loaded.encoder_id != enc.encoder_id
        other = next(f for f in FAMILIES if f != fam)
        with pytest.raises(WeightsError, match=f"not .*{FAMILIES[other].label}"):  # the wrong --family: refused
            load_encoder(model=str(path), device="cpu", num_threads=1, family=other)


def test_a_full_siglip_checkpoint_loads_its_vision_tower(tmp_path):
    """A SigLIP hub checkpoint holds both towers: the text tower is ignored, every vision weight must load."""
    from transformers import SiglipConfig, SiglipModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    SiglipModel(
        SiglipConfig(
            vision_config=dict(**small, image_size=32, patch_size=16),
            text_config=dict(**small, vocab_size=100, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        )
    ).save_pretrained(tmp_path / "siglip")
    enc = load_encoder(model=str(tmp_path / "siglip"), device="cpu", num_threads=1)
    assert (enc.family.name, enc.dim, enc.image_size) == ("siglip", 32, 32)
    assert "mean0.5-std0.5" in enc.preprocessing
    assert enc.encode(windows(1)).shape == (1, 32)


def test_an_unknown_family_names_the_supported_ones(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=16,
        )
    ).save_pretrained(tmp_path / "vit")
    with pytest.raises(UnknownFamily) as err:
        load_encoder(model=str(tmp_path / "vit"), device="cpu", num_threads=1)
    assert "'vit'" in str(err.value) and all(f in str(err.value) for f in FAMILIES)
    with pytest.raises(UnknownFamily, match="dinov2"):
        load_encoder(model=str(tmp_path / "vit"), device="cpu", num_threads=1, family="clip")


def test_settings_refuse_an_unknown_family_or_fusion():
    from services.encoder.settings import EncoderSettings

    with pytest.raises(ValueError, match="siglip"):
        EncoderSettings(model="x/y", family="resnet")
    with pytest.raises(ValueError, match="last3"):
        EncoderSettings(preset="tiny-dinov2", fusion="max")
    assert EncoderSettings(preset="tiny-siglip", fusion="last3").fusion == "last3"


def test_info_route_carries_family_and_weights(encoders, tmp_path):
    from fastapi.testclient import TestClient

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    enc = encoders["siglip"]
    with TestClient(create_app(EncoderSettings(store=str(tmp_path / "store")), encoder=enc)) as client:
        info = client.get("/info").json()
    assert (info["family"], info["fusion"], info["token_pooling"]) == ("siglip", "mean", "map")
    assert info["weights"] == enc.weights and info["encoder_id"] == enc.encoder_id
    assert info["family_label"] == "SigLIP"  # the report's name for it, recorded in a run's lineage


def test_each_family_module_holds_its_presets_and_its_name():
    """services/encoder/families/<family>.py is the one place a family is written: model.py's preset tables are
    its presets, in the registry's order and with the names they always had; GET /info's family_label is the
    name the report printed from its own table before (so old and new records read alike)."""
    from services.encoder import model
    from services.encoder.families import FAMILY_MODULES, family_named
    from vjepa_robot_lab.report.rows import FAMILY_NAMES

    assert model.PRESETS == (
        *("vitl", "vith", "vitg", "vitg-384", "videomae-base", "dinov2-small", "dinov2-base", "dinov2-large"),
        *("siglip-base", "lite0", "vitl-random", "tiny", "tiny-videomae", "tiny-dinov2", "tiny-siglip"),
        "lite0-random",
    )
    assert model.HUB_PRESETS["vitl"] == ("vjepa2", "facebook/vjepa2-vitl-fpc64-256") == ("vjepa2", model.VITL_HUB_ID)
    assert model.RANDOM_INIT_PRESETS == tuple(model.RANDOM_PRESETS)
    assert [m.FAMILY.name for m in FAMILY_MODULES] == list(FAMILIES) == list(FAMILY_NAMES)
    for module in FAMILY_MODULES:
        fam = module.FAMILY
        own = [*fam.hub_presets, *fam.local_presets, *fam.random_presets]
        assert own and all(model.RANDOM_PRESETS.get(p, fam.name) == fam.name for p in own)
        assert {p for p in model.PRESETS if p in own} == set(own)
        assert fam.family_label == FAMILY_NAMES[fam.name] and family_named(fam.name) is fam


def test_a_new_transformers_family_is_its_family_record_alone(tmp_path, monkeypatch):
    """What a family module holds is all the encoder needs: a `Family` for transformers' ViTModel (a family the
    encoder does not serve), put in the registry, loads a saved tiny random-init ViT (a stand-in), encodes windows
    and grids through the Backbone's hooks and names itself in GET /info, with no other code written for it."""
    import transformers

    from services.encoder import families
    from services.encoder.families.base import TINY_VIT, Family

    vit = Family(
        "vit-test",
        "ViT (test)",
        "image",
        {"vit": "ViTModel"},
        "cls",
        display_name="ViT, a test family",
        prefix_tokens=lambda c: 1,  # its CLS token
        final_norm=lambda m: m.layernorm,
    )
    monkeypatch.setitem(families.FAMILIES, vit.name, vit)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = transformers.ViTConfig(**TINY_VIT, image_size=64, patch_size=16)
        transformers.ViTModel(config).save_pretrained(tmp_path)
    enc = Encoder.load(str(tmp_path), device="cpu", num_threads=1)  # found by its config's model_type
    assert enc.family is vit and enc.token_grid == (8, 4, 4) and enc.backbone.prefix == 1
    w = windows(2)
    emb = enc.encode(w)
    assert emb.shape == (2, 96) and np.abs(emb[0] - emb[1]).max() > 1e-4
    grid = enc.encode(w, PoolingSpec.of("grid", 2, layers=(0, 1)))
    assert grid.shape == (2, 4, 192) and np.isfinite(grid.astype(np.float32)).all()
    info = enc.info()
    assert (info["family"], info["family_label"], info["token_pooling"]) == ("vit-test", "ViT, a test family", "cls")
