"""The learning-from-scratch control, `features=pixels` (issue 27): a conv encoder trained end to end with the BC
policy on the dataset's stored frames, beside the frozen encoders.

Why it is here: Hansen et al. 2022 ("On Pre-Training for Visuo-Motor Control: Revisiting a Learning-from-Scratch
Baseline") show that a small conv net trained from scratch with random-shift augmentation matches frozen
pretrained encoders on control benchmarks; a frozen-encoder row means something only beside this one.

The encoder is DrQ-v2's (facebookresearch/drqv2, drqv2.py, class `Encoder`, read at commit 421dfde):
four 3x3 convolutions of 32 channels, the first with stride 2 and the other three with stride 1, a ReLU after
each, on frames scaled to x/255 - 0.5, flattened. Its augmentation is DrQ-v2's `RandomShiftsAug(pad=4)`:
each image is padded by 4 pixels on every side (replicating the border) and cropped back to its size at a random
offset (0..8 in x and y, one offset per sample, the same for every stacked frame of it). DrQ-v2 does the crop
with `grid_sample` at integer offsets; `random_shift` below does it by indexing (same result, no interpolation).
Training only: evaluation reads the frames as rendered.

Frames stacked: the step's last PIXEL_FRAMES = 3 frames (t-2, t-1, t; the episode's first frame fills the start,
the window rule of vjepa_robot_client/window.py), channels concatenated oldest first (9 input channels). Three,
not the encoder windows' 8: it is DrQ-v2's own frame stack (`frame_stack: 3`) and CortexBench's history window
(3 fused embeddings), so the control sees motion as the field's pixel baselines do, at 3/8 of the conv cost.

After the encoder comes the same MLP every frozen-feature row trains (bc.findings_mlp: Linear -> LayerNorm -> ReLU
(256), Linear -> ReLU (64), Linear -> Tanh), so the rows differ in the eyes only. MSE on the expert's actions, Adam,
cosine decay, validation split by episode, the best validation epoch kept (as bc.fit_bc).

    source = PixelFeatures()                  # features.py: offline the dataset's frames; online each env's window
    metrics = bc.train_bc(cfg, run, source, store)   # BC sees PixelFeatures and trains fit_pixel_bc below
    policy = bc.load_bc_policy(run.dir)       # (B, 3, H, W, 3) uint8 frames -> (B, A) actions

SAC from pixels is not built (it would need DrQ-v2's augmented critic updates on rendered replay: hours on this
CPU); the request refuses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vjepa_robot_client.contract import ACTION_DIM, PIXEL_FRAMES
from vjepa_robot_lab.learning.epochs import epoch_record, snapshot
from vjepa_robot_lab.perception.features import PixelFeatures

PIXELS_FORMAT = "vjepa-robot-bc-pixels-v1"
SHIFT_PAD = 4  # DrQ-v2: RandomShiftsAug(pad=4)
CONV_CHANNELS = 32  # DrQ-v2: every conv has 32 channels
CONV_LAYERS = 4  # DrQ-v2: 3x3 stride 2, then three 3x3 stride 1


# ----------------------------------------------------------------------------------------------------------------
# The encoder and the augmentation
# ----------------------------------------------------------------------------------------------------------------


class PixelEncoder(nn.Module):
    """DrQ-v2's conv encoder (see the module docstring) on `frames` stacked RGB frames of `image_size` px:
    (B, frames*3, S, S) float pixel values in [0, 255] -> (B, repr_dim)."""

    def __init__(self, frames: int = PIXEL_FRAMES, image_size: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3 * frames
        for i in range(CONV_LAYERS):
            layers += [nn.Conv2d(c, CONV_CHANNELS, 3, stride=2 if i == 0 else 1), nn.ReLU()]
            c = CONV_CHANNELS
        self.convnet = nn.Sequential(*layers)
        side = (image_size - 3) // 2 + 1 - 2 * (CONV_LAYERS - 1)  # valid convs: stride 2, then -2 per 3x3 conv
        if side < 1:
            raise ValueError(
                f"features 'pixels' need frames of at least {2 * (2 * (CONV_LAYERS - 1)) + 3} px, got {image_size}"
            )
        self.repr_dim = CONV_CHANNELS * side * side

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.convnet(obs / 255.0 - 0.5)
        return h.flatten(1)


def random_shift(x: torch.Tensor, pad: int = SHIFT_PAD, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-v2's random shift: pad each (C, H, W) image by `pad` px (replicating the border), then crop back to
    (H, W) at a random offset in [0, 2*pad] per sample (every channel, i.e. every stacked frame, shifts together)."""
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    off = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    rows = (off[:, 0:1] + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (off[:, 1:2] + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    return out.gather(3, cols)


class PixelBCPolicy(nn.Module):
    """PixelEncoder -> the findings' MLP (bc.findings_mlp, hidden 256, 64) -> (B, A) torques in [-1, 1]."""

    def __init__(self, frames: int, image_size: int, action_dim: int = ACTION_DIM, hidden: Sequence[int] = (256, 64)):
        super().__init__()
        self.frames, self.image_size, self.action_dim, self.hidden = frames, image_size, action_dim, list(hidden)
        self.encoder = PixelEncoder(frames, image_size)
        # the findings' MLP, layer for layer as bc.findings_mlp builds it (tests/test_pixels.py checks they match)
        layers: list[nn.Module] = [nn.Linear(self.encoder.repr_dim, self.hidden[0]), nn.LayerNorm(self.hidden[0])]
        layers.append(nn.ReLU())
        for a, b in zip(self.hidden, self.hidden[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(self.hidden[-1], action_dim), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, frames*3, S, S) float pixels in [0, 255] -> (B, A)."""
        return self.net(self.encoder(obs))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def to_channels(stacks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, F, H, W, 3) uint8 frame stacks -> (B, F*3, H, W) float32 (frames oldest first, RGB within each)."""
    t = torch.as_tensor(np.ascontiguousarray(stacks)) if isinstance(stacks, np.ndarray) else stacks
    b, f, h, w, c = t.shape
    return t.permute(0, 1, 4, 2, 3).reshape(b, f * c, h, w).float()


def stack_index(episode: np.ndarray, step: np.ndarray, frames: int = PIXEL_FRAMES) -> np.ndarray:
    """Row indices (N, frames) of each row's frame stack, oldest first: rows sorted by (episode, step), one row per
    step; a stack reaching before its episode's first row repeats that row (the window rule)."""
    n = len(step)
    start = np.zeros(n, np.int64)  # the first row of each row's episode
    bounds = np.flatnonzero(np.diff(episode)) + 1
    for b in bounds:
        start[b:] = b
    rows = np.arange(n)[:, None] + np.arange(-frames + 1, 1)[None, :]
    return np.maximum(rows, start[:, None])


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def fit_pixel_bc(
    frames_x: np.ndarray,
    index: np.ndarray,
    y: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    augment: bool = True,
    on_epoch=None,
    should_stop=None,
    select: str = "best_val",
) -> tuple[PixelBCPolicy, dict]:
    """Train PixelBCPolicy on frames (N, H, W, 3) uint8 gathered into stacks by `index` (N, F) -> y (N, A).
    Returns (model in eval mode, metrics shaped like bc.fit_bc's)."""
    from vjepa_robot_lab.threads import seeded_torch

    t0 = time.perf_counter()
    n_frames, size = index.shape[1], frames_x.shape[1]
    fx = torch.from_numpy(np.ascontiguousarray(frames_x))  # uint8, gathered per batch
    ix = torch.from_numpy(index.astype(np.int64))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    with seeded_torch(seed):
        model = PixelBCPolicy(n_frames, size, action_dim=y.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    tr, va = torch.from_numpy(train_rows.astype(np.int64)), torch.from_numpy(val_rows.astype(np.int64))

    def batch(idx: torch.Tensor) -> torch.Tensor:
        return to_channels(fx[ix.index_select(0, idx)])  # (b, F, H, W, 3) -> (b, F*3, H, W)

    @torch.no_grad()
    def val_mse() -> float | None:
        if len(va) == 0:
            return None
        model.eval()
        total = 0.0
        for i in range(0, len(va), 1024):
            idx = va[i : i + 1024]
            total += float(nn.functional.mse_loss(model(batch(idx)), yt.index_select(0, idx), reduction="sum"))
        return total / (len(va) * yt.shape[1])

    train_curve: list[float] = []
    val_curve: list[float | None] = []
    best_epoch, best_val, best_state, stopped = None, None, None, False
    for epoch in range(epochs):
        model.train()
        perm = tr[torch.randperm(len(tr), generator=gen)]
        loss_sum = 0.0
        for b, i in enumerate(range(0, len(perm), batch_size)):
            idx = perm[i : i + batch_size]
            xb = batch(idx)
            if augment:
                xb = random_shift(xb, generator=gen)
            loss = nn.functional.mse_loss(model(xb), yt.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            if should_stop is not None and b % 16 == 15 and should_stop():
                stopped = True
                break
        sched.step()
        if stopped:
            break
        train_curve.append(loss_sum / max(len(tr), 1))
        val_curve.append(val_mse())
        if val_curve[-1] is not None and (best_val is None or val_curve[-1] < best_val):
            best_epoch, best_val = len(val_curve), val_curve[-1]
            if select == "best_val":
                best_state = snapshot(model)
        if on_epoch is not None:
            on_epoch(epoch_record(epoch, epochs, train_curve, val_curve, best_epoch, best_val))
    done = len(train_curve)
    selected = done
    if best_state is not None and best_epoch != done:
        model.load_state_dict(best_state)
        selected = best_epoch
    model.eval()
    train_s = time.perf_counter() - t0
    return model, {
        "train_loss": train_curve[-1] if train_curve else None,
        "val_loss": val_curve[-1] if val_curve else None,
        "train_loss_curve": train_curve,
        "val_loss_curve": val_curve,
        "epoch": done,
        "epochs": epochs,
        "select": select,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "selected_epoch": selected,
        "selected_val_loss": val_curve[selected - 1] if val_curve and selected else None,
        "stopped": stopped,
        "n_train": int(len(train_rows)),
        "n_val": int(len(val_rows)),
        "dim": int(n_frames * size * size * 3),
        "params": model.num_parameters(),
        "batch_size": batch_size,
        "lr": lr,
        "train_s": round(train_s, 3),
        "samples_per_s": round(done * len(train_rows) / train_s, 1) if train_s > 0 else None,
        "fit_s": round(train_s, 3),
        "torch_threads": torch.get_num_threads(),
        "precision": "fp32",
        "head": "findings",
        "hidden_sizes": None,
        "lr_schedule": "cosine",
        "augmentation": f"random shift, pad {SHIFT_PAD} (replicate)" if augment else None,
        "frames": int(n_frames),
        "image_size": int(size),
    }


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints (safetensors, as every BC policy)
# ----------------------------------------------------------------------------------------------------------------


def save_pixel_policy(path: Path, model: PixelBCPolicy, lineage: dict) -> Path:
    from safetensors.torch import save_file

    from vjepa_robot_lab.records.runs import json_default

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": PIXELS_FORMAT,
        "frames": str(model.frames),
        "image_size": str(model.image_size),
        "action_dim": str(model.action_dim),
        "hidden": json.dumps(model.hidden),
        "lineage": json.dumps(lineage, default=json_default),
    }
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic
    return path


class LoadedPixelPolicy:
    """A trained pixels policy as a plain function: (B, frames, H, W, 3) uint8 stacks -> (B, A) float32 actions."""

    readout, grid_size = "mean", 4  # what evaluate.FeaturePolicy asks of a policy: pixels are read as they are

    def __init__(self, model: PixelBCPolicy, lineage: dict, path: Path):
        self.model, self.lineage, self.path = model, lineage, path
        self.frames, self.image_size = model.frames, model.image_size
        self.dim = model.frames * model.image_size * model.image_size * 3

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        want = (self.frames, self.image_size, self.image_size, 3)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"this pixels policy reads frame stacks of shape (B, {', '.join(map(str, want))}), got {x.shape}: "
                f"evaluate it at its own frame size ({self.image_size} px)"
            )
        return self.model(to_channels(x)).numpy().astype(np.float32, copy=False)


def is_pixel_checkpoint(meta: dict) -> bool:
    return (meta or {}).get("format") == PIXELS_FORMAT


def load_pixel_policy(path: Path | str) -> LoadedPixelPolicy:
    """Load a pixels BC checkpoint (a run dir or its policy.safetensors) strictly, in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "policy.safetensors"  # bc.CHECKPOINT_NAME: every BC run keeps its policy under this name
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if not is_pixel_checkpoint(meta):
        raise ValueError(f"{path} is not a pixels BC checkpoint (format {meta.get('format')!r})")
    model = PixelBCPolicy(
        int(meta["frames"]), int(meta["image_size"]), int(meta["action_dim"]), json.loads(meta["hidden"])
    )
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval()
    return LoadedPixelPolicy(model, json.loads(meta.get("lineage", "{}")), path)


__all__ = [
    "PixelEncoder",
    "PixelBCPolicy",
    "PixelFeatures",
    "random_shift",
    "stack_index",
    "fit_pixel_bc",
    "load_pixel_policy",
    "save_pixel_policy",
]
