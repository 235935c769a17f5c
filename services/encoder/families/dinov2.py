"""DINOv2 (image): each frame's CLS token after the final LayerNorm (Dinov2Model's pooler_output, what DINOv2's
linear probes start from); its grid is the patch tokens after its CLS and register tokens. Input 224 px (its
processor's crop; the hub configs' 518 is the position table's size, interpolated by the model)."""

from __future__ import annotations

from services.encoder.families.base import TINY_VIT, Family


def tiny_config():
    import transformers

    return transformers.Dinov2Config(**TINY_VIT, image_size=112, patch_size=14)


def _geometry(c) -> tuple[int, int, int]:
    size, patch = min(int(c.image_size), 224), int(c.patch_size)
    return size - size % patch, patch, 1


FAMILY = Family(
    "dinov2",
    "DINOv2",
    "image",
    {"dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel"},
    "cls",
    ignore_unexpected=("classifier.", "mask_token"),
    hub_presets={
        "dinov2-small": "facebook/dinov2-small",
        "dinov2-base": "facebook/dinov2-base",
        "dinov2-large": "facebook/dinov2-large",
    },
    random_presets={"tiny-dinov2": tiny_config},
    geometry=_geometry,
    prefix_tokens=lambda c: 1 + int(getattr(c, "num_register_tokens", 0) or 0),  # CLS (+ registers)
    final_norm=lambda m: m.layernorm,
)
