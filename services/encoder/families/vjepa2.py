"""V-JEPA 2 (video): the 8-frame window whole; the embedding is the mean over its (t, h, w) tokens of
last_hidden_state (VJEPA2Model has no pooler); the predictor is never run."""

from __future__ import annotations

from typing import Any

from services.encoder.families.base import Family
from vjepa_robot_client.contract import WINDOW_FRAMES

VITL_HUB_ID = "facebook/vjepa2-vitl-fpc64-256"
# The revision asked for by default. It is NOT what the id records: Encoder.load resolves it to the commit of the
# snapshot loaded (services/encoder/weights.py), so when the hub's main moves the encoder id moves with it.
VITL_REVISION = "main"


def tiny_vjepa2_kwargs() -> dict[str, Any]:
    """hidden 96, 2 layers, 4 heads, 128x128 crops -> 256 tokens per 8-frame window."""
    return dict(
        crop_size=128,
        frames_per_clip=WINDOW_FRAMES,
        patch_size=16,
        tubelet_size=2,
        hidden_size=96,
        num_attention_heads=4,
        num_hidden_layers=2,
        mlp_ratio=4.0,
        pred_hidden_size=32,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
    )


def tiny_config():
    import transformers

    return transformers.VJEPA2Config(**tiny_vjepa2_kwargs())


def vitl_config():
    """ViT-L's architecture (transformers' VJEPA2Config defaults), for the vitl-random stand-in."""
    import transformers

    return transformers.VJEPA2Config()


def _geometry(c) -> tuple[int, int, int]:
    return int(c.crop_size), int(c.patch_size), int(c.tubelet_size)


def _forward(model, pixels, hidden: bool = False):
    return model(pixel_values_videos=pixels, skip_predictor=True, output_hidden_states=hidden)


# V-JEPA 2 ids: the released encoders (facebookresearch/vjepa2 README / the hub's facebook/vjepa2-* models):
# ViT-L 300M (1024 wide, 24 blocks), ViT-H 600M (1280, 32), ViT-g 1B (1408, 40) at 256 px, ViT-g at 384 px.
FAMILY = Family(
    "vjepa2",
    "V-JEPA 2",
    "video",
    {"vjepa2": "VJEPA2Model"},
    "mean",
    ignore_missing=("predictor.",),
    hub_presets={
        "vitl": VITL_HUB_ID,
        "vith": "facebook/vjepa2-vith-fpc64-256",
        "vitg": "facebook/vjepa2-vitg-fpc64-256",
        "vitg-384": "facebook/vjepa2-vitg-fpc64-384",
    },
    preset_revisions={"vitl": VITL_REVISION},
    random_presets={"vitl-random": vitl_config, "tiny": tiny_config},
    geometry=_geometry,
    final_norm=lambda m: m.encoder.layernorm,
    video_forward=_forward,
)
