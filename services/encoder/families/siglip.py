"""SigLIP (image): each frame's attention-pooling (MAP) head output (SiglipVisionModel's pooler_output, what
SigLIP's image embedding is); its grid is all its tokens. Normalisation 0.5/0.5 (SiglipImageProcessor's
image_mean/std); input config.image_size (its position embeddings are fixed to it)."""

from __future__ import annotations

from services.encoder.families.base import HALF, TINY_VIT, Family


def tiny_config():
    import transformers

    return transformers.SiglipVisionConfig(**TINY_VIT, image_size=128, patch_size=16)


FAMILY = Family(
    "siglip",
    "SigLIP",
    "image",
    {"siglip": "SiglipVisionModel", "siglip_vision_model": "SiglipVisionModel"},
    "map",
    mean=HALF,
    std=HALF,
    ignore_unexpected=("text_model.", "logit_scale", "logit_bias"),
    hub_presets={"siglip-base": "google/siglip-base-patch16-224"},
    random_presets={"tiny-siglip": tiny_config},
    final_norm=lambda m: getattr(m, "post_layernorm", None) or m.vision_model.post_layernorm,
)
