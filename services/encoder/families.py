"""Backbone families the encoder serves (issue 18): V-JEPA 2 and VideoMAE (video), DINOv2 and SigLIP (image).

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
SigLIP's image embedding is). The 8 per-frame vectors are then FUSED over the window (recorded in the encoder id):
  - `mean` (default): the mean over the 8 frames; D stays the backbone's width. Chosen as the default because it
    treats an image backbone like V-JEPA 2's mean over all the window's tokens (a fair like-for-like), and keeps
    D the same for readouts sized by width. It averages motion away: order is lost.
  - `last`: the newest frame only (a single-image policy).
  - `last3`: the newest 3 frames' vectors concatenated oldest -> newest, (B, 3D): CortexBench's (eai-vc
    mujoco_vc) frame fusion for DMC, "the last 3 embeddings", so order (velocity) survives.
pool=grid on an image family: each frame's patch tokens (DINOv2: after its CLS and register tokens; SigLIP: all
tokens), a (T'=8, h, w) grid whose `time=mean` is the mean over the 8 frames and `time=last` the newest frame,
then the same adaptive average pooling as V-JEPA 2 (docs/grids.md).

Preprocessing is ours for every family (model.preprocess): each whole frame resized to the model's size (no crop,
see model.py), each family's own normalisation: ImageNet mean/std for V-JEPA 2, VideoMAE and DINOv2, 0.5/0.5 for
SigLIP (SiglipImageProcessor's image_mean/std). Sizes: V-JEPA 2 crop_size, VideoMAE and SigLIP config.image_size
(their position embeddings are fixed to it), DINOv2 224 (its processor's crop; the hub configs' 518 is the
position table's size, interpolated by the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vjepa_robot_client.contract import WINDOW_FRAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision / transformers IMAGENET_DEFAULT_MEAN / _STD
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # transformers IMAGENET_STANDARD_MEAN / _STD (SigLIP)
FUSIONS = ("mean", "last", "last3")
DEFAULT_FUSION = "mean"
VIDEO_FUSION = "video"  # what a video family records: the window goes through the model whole


class UnknownFamily(ValueError):
    """A checkpoint or --family the encoder cannot serve; the message names what it can."""


@dataclass(frozen=True)
class Family:
    name: str  # --family value, recorded in the id and lineage
    label: str
    kind: str  # "video" | "image"
    classes: dict[str, str]  # config.model_type -> transformers model class name
    token_pooling: str  # how a forward's tokens become one vector
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_missing: tuple[str, ...] = ()  # parameters never run (V-JEPA 2's predictor)
    ignore_unexpected: tuple[str, ...] = ()  # checkpoint tensors not needed (SigLIP's text tower, ...)
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # config overrides at load (VideoMAE: 8 frames)

    @property
    def norm(self) -> str:
        """The normalisation's name in the preprocessing string (ImageNet keeps the string V-JEPA 2 ids hashed)."""
        return "imagenet-mean-std" if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD) else "mean0.5-std0.5"

    def model_class(self, model_type: str):
        import transformers

        return getattr(transformers, self.classes[model_type])


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("vjepa2", "V-JEPA 2", "video", {"vjepa2": "VJEPA2Model"}, "mean", ignore_missing=("predictor.",)),
        Family(
            "videomae",
            "VideoMAE",
            "video",
            {"videomae": "VideoMAEModel"},
            "mean",
            ignore_unexpected=("decoder.", "encoder_to_decoder.", "mask_token", "fc_norm.", "classifier."),
            load_kwargs={"num_frames": WINDOW_FRAMES},
        ),
        Family(
            "dinov2",
            "DINOv2",
            "image",
            {"dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel"},
            "cls",
            ignore_unexpected=("classifier.", "mask_token"),
        ),
        Family(
            "siglip",
            "SigLIP",
            "image",
            {"siglip": "SiglipVisionModel", "siglip_vision_model": "SiglipVisionModel"},
            "map",
            mean=HALF,
            std=HALF,
            ignore_unexpected=("text_model.", "logit_scale", "logit_bias"),
        ),
    )
}


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


def check_fusion(fusion: str | None, family: Family) -> str:
    """The fusion recorded for this family: 'video' for video families, one of FUSIONS for image ones."""
    if family.kind == "video":
        if fusion not in (None, VIDEO_FUSION):
            raise ValueError(f"fusion {fusion!r} is for image families; {family.label} takes the window whole")
        return VIDEO_FUSION
    fusion = fusion or DEFAULT_FUSION
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}: choose one of {', '.join(FUSIONS)}")
    return fusion


# -- tiny random-init configs: stand-ins so tests run on CPU ---------------------------------------------------------


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


_TINY_VIT = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=384)


def tiny_config(family: str):
    """The tiny config of a family (96 wide, 2 blocks, 8x8 patch grid per frame)."""
    import transformers

    if family == "vjepa2":
        return transformers.VJEPA2Config(**tiny_vjepa2_kwargs())
    if family == "videomae":
        return transformers.VideoMAEConfig(
            **_TINY_VIT, image_size=128, patch_size=16, num_frames=WINDOW_FRAMES, tubelet_size=2, use_mean_pooling=True
        )
    if family == "dinov2":
        return transformers.Dinov2Config(**_TINY_VIT, image_size=112, patch_size=14)
    if family == "siglip":
        return transformers.SiglipVisionConfig(**_TINY_VIT, image_size=128, patch_size=16)
    raise UnknownFamily(f"no tiny config for {family!r}: {', '.join(FAMILIES)}")


# -- the per-family forward ------------------------------------------------------------------------------------------


class Backbone:
    """One loaded model of a family: sizes, and the forward that turns normalised windows into vectors / tokens."""

    def __init__(self, model: torch.nn.Module, family: Family, fusion: str | None = None):
        self.model, self.family = model, family
        self.fusion = check_fusion(fusion, family)
        c = model.config
        self.width = int(c.hidden_size)  # D of one token
        self.num_layers = int(c.num_hidden_layers)
        if family.name == "vjepa2":
            self.image_size, self.patch, tubelet = int(c.crop_size), int(c.patch_size), int(c.tubelet_size)
        elif family.name == "videomae":
            self.image_size, self.patch, tubelet = int(c.image_size), int(c.patch_size), int(c.tubelet_size)
            if int(c.num_frames) != WINDOW_FRAMES:
                raise ValueError(f"VideoMAE must be loaded with num_frames={WINDOW_FRAMES}, got {c.num_frames}")
        elif family.name == "dinov2":
            self.image_size, self.patch, tubelet = min(int(c.image_size), 224), int(c.patch_size), 1
            self.image_size -= self.image_size % self.patch
        else:  # siglip
            self.image_size, self.patch, tubelet = int(c.image_size), int(c.patch_size), 1
        side = self.image_size // self.patch
        self.token_grid = (WINDOW_FRAMES // tubelet, side, side)  # [T', h, w]; image families: T' = frames
        # tokens before the patch grid in last_hidden_state: DINOv2's CLS (+ registers), none elsewhere
        self.prefix = 1 + int(getattr(c, "num_register_tokens", 0) or 0) if family.name == "dinov2" else 0
        k = {"mean": 1, "last": 1, "last3": 3, VIDEO_FUSION: 1}[self.fusion]
        self.dim = self.width * k  # D of the window vector

    def final_norm(self) -> torch.nn.Module | None:
        """The LayerNorm the model applies after its last block (for `layers`: each block's output through it)."""
        m = self.model
        return {
            "vjepa2": lambda: m.encoder.layernorm,
            "dinov2": lambda: m.layernorm,
            "siglip": lambda: getattr(m, "post_layernorm", None) or m.vision_model.post_layernorm,
            "videomae": lambda: getattr(m, "layernorm", None),
        }[self.family.name]()

    def _forward(self, pixels: torch.Tensor, hidden: bool = False):
        """pixels (B, 8, 3, S, S) -> the model's output (image families: over B*8 frames)."""
        name = self.family.name
        if name == "vjepa2":
            return self.model(pixel_values_videos=pixels, skip_predictor=True, output_hidden_states=hidden)
        if name == "videomae":
            return self.model(pixel_values=pixels, output_hidden_states=hidden)
        return self.model(pixel_values=pixels.flatten(0, 1), output_hidden_states=hidden)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, D) float32."""
        out = self._forward(pixels)
        if self.family.kind == "video":
            return out.last_hidden_state.float().mean(dim=1)
        per_frame = out.pooler_output.float().reshape(pixels.shape[0], pixels.shape[1], -1)  # (B, 8, width)
        if self.fusion == "mean":
            return per_frame.mean(dim=1)
        if self.fusion == "last":
            return per_frame[:, -1]
        return per_frame[:, -3:].flatten(1)  # last3: (B, 3 * width), oldest -> newest

    def tokens(self, pixels: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, T', h, w, D') float32 patch tokens of the last hidden state, or of `layers`."""
        out = self._forward(pixels, hidden=bool(layers))
        if layers:
            norm = self.final_norm() or torch.nn.Identity()
            x = torch.cat([norm(out.hidden_states[i + 1]) for i in layers], dim=-1)
        else:
            x = out.last_hidden_state
        x = x[:, self.prefix :]
        t, h, w = self.token_grid
        b = pixels.shape[0]
        if x.shape[0] * x.shape[1] != b * t * h * w:
            raise RuntimeError(f"the model returned {x.shape[1]} patch tokens, expected a {t}x{h}x{w} grid")
        return x.float().reshape(b, t, h, w, x.shape[-1])
