"""Behaviour cloning from frozen features, exactly as the first study (the findings' "BC Training"; docs/background.md).

    Linear(D->256) -> LayerNorm -> ReLU -> Linear(256->64) -> ReLU -> Linear(64->2) -> Tanh
    MSE on the expert's actions, Adam, cosine LR decay over 100 epochs, validation split by episode.

    metrics = train_bc(TrainBCRequest(dataset="jacobian-easy-150", features="state"), run, features, store)
    policy = load_bc_policy(run.dir)          # (B, D) float32 np -> (B, 2) float32 actions in [-1, 1]

Feature standardisation: the per-dimension mean/std of the TRAIN split are buffers of the policy
(`norm_mean`, `norm_std`) and the forward pass standardises its input, so the checkpoint carries them and a
caller always feeds raw features, offline and live alike. It matters for state features (velocities are ~10x
larger than cos/sin) and is harmless for V-JEPA 2 embeddings.

Speed: the whole feature matrix is standardised once into one torch tensor; each batch is an `index_select`
of a randperm slice -- no DataLoader, no per-row Python, no per-step normalisation. Threads: the process's
torch setting, chosen once at trainer start (vjepa_robot_lab/threads.py; one thread on a 2-core machine: two
stalled 50x on the busy shared box). 100,000 x 1024, 100 epochs, batch 256 on
the shared 2-core Xeon (bench/TRAINER_RESULTS.md): 3.6 min fp32, 2.25 min with precision="bf16" (AMX autocast,
same final losses); the findings took ~8 min. The step is compute-bound (two 256x1024x256 matmuls).

Checkpoint: `<run.dir>/policy.safetensors` (never pickled). Its metadata holds `lineage` (JSON: dataset,
feature lineage incl. encoder_id, config, metrics) and `format`; the norm stats are tensors in the file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.common.store import Store, fixed_list_to_numpy
from vjepa_robot_client.contract import ACTION_DIM, DEFAULT_GRID_SIZE, TrainBCRequest
from vjepa_robot_lab.learning.curves import open_curves
from vjepa_robot_lab.learning.epochs import epoch_record, snapshot
from vjepa_robot_lab.perception.features import FeatureSource, FeatureTable, PixelFeatures
from vjepa_robot_lab.perception.pixels import (
    fit_pixel_bc,
    is_pixel_checkpoint,
    load_pixel_policy,
    save_pixel_policy,
    stack_index,
)
from vjepa_robot_lab.perception.readouts import (
    DEFAULT_READOUT,
    get_readout,
    network_entry,
    readout_of_network,
    saved_network,
)
from vjepa_robot_lab.policies.loaded import LoadedPolicy
from vjepa_robot_lab.records.runs import json_default
from vjepa_robot_lab.threads import seeded_torch

CHECKPOINT_NAME = "policy.safetensors"
CHECKPOINT_FORMAT = "vjepa-robot-bc-v1"
PRECISION_ENV = "VJEPA_ROBOT_BC_PRECISION"
VAL_BATCH = 8192  # rows per forward pass when scoring the validation split (no gradients: memory is the limit)


# ----------------------------------------------------------------------------------------------------------------
# The policy
# ----------------------------------------------------------------------------------------------------------------


HEADS = ("findings", "batchnorm")
BATCHNORM_HIDDEN = (256, 256, 256)  # eai-vc DMC_BC_config.yaml bc_kwargs.hidden_sizes


def findings_mlp(width: int, hidden: list[int], action_dim: int) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU, then Linear -> ReLU per further width, then Linear -> Tanh (torques in [-1, 1])."""
    layers: list[nn.Module] = [nn.Linear(width, hidden[0]), nn.LayerNorm(hidden[0]), nn.ReLU()]
    for a, b in zip(hidden, hidden[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden[-1], action_dim), nn.Tanh())


def batchnorm_mlp(width: int, hidden: list[int], action_dim: int) -> nn.Sequential:
    """CortexBench's policy (eai-vc cortexbench/mujoco_vc train_loop.py builds mjrl's BatchNormMLP): BatchNorm1d on
    the input features, then Linear -> ReLU per hidden width (their dropout is 0), then a linear output with no
    squashing (the simulator clips the torques to the actuators' ctrlrange).

    The input BatchNorm starts at scale 0.01, as CortexBench's does: mjrl's BatchNormMLP multiplies "the last layer"
    by 0.01 as `list(model.parameters())[-2:]` (mjrl/policies/gaussian_mlp.py), and FCNetworkWithBatchNorm registers
    its input_batchnorm after its linear layers, so those two parameters are the BatchNorm's weight and bias (1 -> 0.01,
    0 -> 0); the output layer keeps torch's default initialisation."""
    norm = nn.BatchNorm1d(width)
    with torch.no_grad():
        norm.weight.mul_(0.01)
        norm.bias.mul_(0.01)
    layers: list[nn.Module] = [norm]
    for a, b in zip([width, *hidden], hidden):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden[-1], action_dim))


class BCPolicy(nn.Module):
    """The findings' MLP (279,490 parameters at D=1024) with the train-split standardisation baked in.

    With `pooler` (a learned readout's network config, vjepa_robot_lab/perception/readouts/) the input is what that
    readout reads -- a window's token grid, flat (B, G*D) or (B, G, D), for a pooler over grids: it is standardised
    per column, read by the readout's network (built by the registry, its tensors under "pooler.") to (B, out_dim),
    and the same MLP follows. Without it the state dict is exactly the findings' (checkpoints of either load
    strictly).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        hidden2: int = 64,
        action_dim: int = ACTION_DIM,
        pooler: Any | None = None,
        head: str = "findings",
        hidden_sizes: list[int] | tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.dim = dim  # input width: D, or G*D for a grid
        if head not in HEADS:
            raise ValueError(f"unknown BC head {head!r}: choose one of {', '.join(HEADS)}")
        self.head_cfg = {"head": head, "hidden_sizes": list(hidden_sizes) if hidden_sizes else None}
        self.action_dim = action_dim
        self.pooler = None  # the readout's network (readouts/: ReadoutKind.network), trained with the MLP
        if pooler is not None:
            readout = readout_of_network(pooler)
            self.pooler = readout.network(pooler)
            readout.check_input(pooler, dim)
        width = self.pooler.out_dim if self.pooler is not None else dim
        if head == "batchnorm":
            self.net = batchnorm_mlp(width, list(hidden_sizes or BATCHNORM_HIDDEN), action_dim)
        elif hidden_sizes:  # findings with other widths: LayerNorm after the first layer, ReLU, Tanh out
            self.net = findings_mlp(width, list(hidden_sizes), action_dim)
        else:
            self.net = findings_mlp(width, [hidden, hidden2], action_dim)  # the findings' exact state dict
        # buffers, not parameters: saved with the weights, never trained
        self.register_buffer("norm_mean", torch.zeros(dim))
        self.register_buffer("norm_std", torch.ones(dim))

    def set_normalisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.norm_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.norm_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dim) standardised features -> (B, 2) actions (training runs this on pre-standardised rows)."""
        return self.net(self.pooler(z) if self.pooler is not None else z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) raw features (or (B, G, D) raw grids) -> (B, 2) actions."""
        return self.head((x.reshape(len(x), self.dim) - self.norm_mean) / self.norm_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Data: features and expert actions, in bulk
# ----------------------------------------------------------------------------------------------------------------


def load_bc_data(store: Store, dataset: str, features: FeatureSource) -> tuple[FeatureTable, np.ndarray]:
    """(FeatureTable with x (N, D) float32, actions (N, 2) float32), aligned row for row by (episode, step)."""
    table = features.offline(store, dataset)
    steps = store.read_steps(dataset, ["action"])  # sorted by (episode, step), like every FeatureTable
    episode, step = steps.column("episode").to_numpy(), steps.column("step").to_numpy()
    if not (np.array_equal(episode, table.episode) and np.array_equal(step, table.step)):
        raise ValueError(
            f"features {table.lineage.get('features')!r} of dataset {dataset!r} do not cover the same (episode, step) "
            f"rows as its steps ({len(table)} vs {len(step)} rows): re-encode the dataset"
        )
    width = steps.schema.field("action").type.list_size  # the task's action_dim: 2 reacher, 6 walker (tasks.py)
    actions = fixed_list_to_numpy(steps.column("action"), width).astype(np.float32, copy=False)
    if table.x.dtype not in (np.float32, np.float16):  # float16 grids stay half: fit_bc standardises per batch
        table.x = table.x.astype(np.float32)
    return table, actions


def split_by_episode(episode: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): a seeded val_fraction of whole episodes is held out (at least one if > 0)."""
    unique = np.unique(episode)
    n_val = int(round(val_fraction * len(unique)))
    if val_fraction > 0 and len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    else:
        n_val = 0
    val_eps = np.random.default_rng(seed).choice(unique, size=n_val, replace=False)
    is_val = np.isin(episode, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def feature_stats(x: np.ndarray, rows: np.ndarray, chunk: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of x[rows], in float64, chunked (no full copy of a 400 MB matrix)."""
    d = x.shape[1]
    s, ss = np.zeros(d), np.zeros(d)
    for i in range(0, len(rows), chunk):
        block = x[rows[i : i + chunk]].astype(np.float64)
        s += block.sum(0)
        ss += np.square(block).sum(0)
    n = max(len(rows), 1)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant dimension passes through unscaled
    return mean.astype(np.float32), std.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------------------------


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    if not a.flags.writeable:  # zero-copy Arrow buffers are read-only; torch wants writeable memory
        a = a.copy()
    return torch.from_numpy(np.ascontiguousarray(a))


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray, chunk: int = 16_384) -> torch.Tensor:
    """(x - mean) / std as a new (N, D) float32 tensor, chunked. Training runs the MLP on this once-standardised
    copy (the copy a read-only Arrow buffer needs anyway), so no step pays for the normalisation; the policy's
    forward applies the same buffers to raw features at inference."""
    out = np.empty(x.shape, np.float32)
    for i in range(0, len(x), chunk):
        np.divide(np.subtract(x[i : i + chunk], mean, dtype=np.float32), std, out=out[i : i + chunk])
    return torch.from_numpy(out)


class _Rows:
    """Standardised training rows, gathered by index: (b, D) float32 (bfloat16 with bf16).

    float32 features are standardised once into a new tensor (the copy a read-only Arrow buffer needs anyway).
    float16 features (token grids a readout reads: a 100k-window ViT-L g=4 set is 3.3 GB in float16, 6.6 GB as
    float32) are never copied: each batch is gathered from them -- in memory or memory-mapped
    (features.read_grid_rows) -- and standardised on its own, a (b, G*D) subtract and divide per step."""

    def __init__(self, x: np.ndarray, mean: np.ndarray, std: np.ndarray, bf16: bool):
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.lazy = x.dtype == np.float16
        if self.lazy:
            import warnings

            with warnings.catch_warnings():  # a read-only Arrow/mapped buffer: training only ever reads it
                warnings.simplefilter("ignore", UserWarning)
                self.x = torch.from_numpy(x)
            self.mean, self.std = torch.from_numpy(mean), torch.from_numpy(std)
        else:
            self.x = standardise(x, mean, std).to(self.dtype)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        xb = self.x.index_select(0, idx)
        if self.lazy:
            xb = ((xb.float() - self.mean) / self.std).to(self.dtype)
        return xb


@torch.no_grad()
def _mse(model: BCPolicy, x: _Rows, y: torch.Tensor, rows: torch.Tensor) -> float | None:
    if len(rows) == 0:
        return None
    total = 0.0
    for i in range(0, len(rows), VAL_BATCH):
        idx = rows[i : i + VAL_BATCH]
        pred = model.head(x(idx))  # standardised rows
        total += float(nn.functional.mse_loss(pred.float(), y.index_select(0, idx), reduction="sum"))
    return total / (len(rows) * y.shape[1])


def fit_bc(
    x: np.ndarray,
    y: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
    threads: int | None = None,
    precision: str | None = None,
    select: str = "best_val",
    pooler: Any | None = None,
    head: str = "findings",
    hidden_sizes: list[int] | None = None,
    lr_schedule: str = "cosine",
) -> tuple[BCPolicy, dict]:
    """Train a BCPolicy on x (N, D) float32 -> y (N, 2) float32 over the given row indices.

    Returns (model in eval mode, metrics). `on_epoch` gets {"epoch", "epochs", "train_loss", "val_loss"} after
    every epoch; `should_stop` is polled between batches (every 64) and ends training early, keeping the model.
    `threads`: deprecated and ignored: torch's thread count is process-wide, so it is set once at trainer start
    (vjepa_robot_lab/threads.py, $VJEPA_ROBOT_TORCH_THREADS), never by a job that another job runs beside.
    `precision`: "fp32" (default; $VJEPA_ROBOT_BC_PRECISION overrides) or "bf16": features kept in bfloat16 and the
    MLP run under CPU autocast (AMX on Sapphire Rapids) -- 1.55x faster steps measured at D=1024, batch 256;
    weights, optimiser state and the loss stay fp32, and the checkpoint is the same fp32 policy.
    `select`: "best_val" (default) returns the weights of the epoch with the lowest validation MSE (BC on
    high-dimensional features overfits within a few epochs: the last epoch is rarely the best policy); "last"
    returns the final epoch's. Without a validation split both are the last epoch. The metrics record
    `best_epoch`, `best_val_loss` and `selected_epoch`.
    `pooler`: a learned readout's network config (ReadoutKind.network_config, e.g. a PoolerConfig):
    x holds that readout's rows (flat token grids (N, G*D)) and its network of this shape is trained with the MLP.
    `head` / `hidden_sizes`: the MLP (BCPolicy; "batchnorm" is CortexBench's BatchNorm MLP: a trailing batch of one
    row is skipped, since BatchNorm cannot normalise one row in training). `lr_schedule`: "cosine" decays the lr
    over the epochs (the findings), "constant" keeps Adam at lr (CortexBench).
    """
    if select not in ("best_val", "last"):
        raise ValueError(f"select must be 'best_val' or 'last', got {select!r}")
    precision = precision or os.environ.get(PRECISION_ENV, "fp32")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r} (e.g. {PRECISION_ENV}=bf16)")
    if threads is not None:
        import warnings

        warnings.warn(
            "fit_bc(threads=...) is ignored: set VJEPA_ROBOT_TORCH_THREADS (once per process)",
            DeprecationWarning,
            stacklevel=2,
        )
    return _fit_bc(
        x,
        y,
        train_rows,
        val_rows,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        on_epoch=on_epoch,
        should_stop=should_stop,
        progress=progress,
        precision=precision,
        select=select,
        pooler=pooler,
        head=head,
        hidden_sizes=hidden_sizes,
        lr_schedule=lr_schedule,
    )


def _fit_bc(
    x,
    y,
    train_rows,
    val_rows,
    *,
    epochs,
    batch_size,
    lr,
    seed,
    on_epoch,
    should_stop,
    progress,
    precision,
    select="best_val",
    pooler=None,
    head="findings",
    hidden_sizes=None,
    lr_schedule="cosine",
):
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    t0 = time.perf_counter()
    n, d = x.shape
    mean, std = feature_stats(x, train_rows)
    bf16 = precision == "bf16"  # bf16: half the memory and the bytes gathered per batch
    xt, yt = _Rows(x, mean, std, bf16), _as_tensor(y)  # (N, D) standardised rows by index, (N, 2)
    tr, va = torch.from_numpy(train_rows.astype(np.int64)), torch.from_numpy(val_rows.astype(np.int64))

    with seeded_torch(seed):  # seeded init, alone: no other job's draws interleave (vjepa_robot_lab/threads.py)
        model = BCPolicy(d, action_dim=y.shape[1], pooler=pooler, head=head, hidden_sizes=hidden_sizes)  # y (N, A)
    model.set_normalisation(mean, std)
    # fused Adam: one kernel per step for all parameters instead of a Python loop over them
    try:
        opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) if lr_schedule == "cosine" else None
    gen = torch.Generator().manual_seed(seed)

    train_curve: list[float] = []
    val_curve: list[float | None] = []
    best_epoch, best_val, best_state = None, None, None  # 1-based epoch of the lowest validation MSE
    stopped = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="bc", unit="epoch")
    t_train = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = tr[torch.randperm(len(tr), generator=gen)]
        loss_sum = torch.zeros(())
        for b, i in enumerate(range(0, len(perm), batch_size)):
            idx = perm[i : i + batch_size]
            if len(idx) == 1 and head == "batchnorm" and len(perm) > 1:
                continue  # BatchNorm cannot normalise a batch of one row in training
            xb, yb = xt(idx), yt.index_select(0, idx)  # (b, D), (b, 2)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = model.head(xb)  # xb is already standardised
            loss = nn.functional.mse_loss(pred.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            if should_stop is not None and b % 64 == 63 and should_stop():
                stopped = True
                break
        if sched is not None:
            sched.step()
        if stopped:
            break
        model.eval()
        train_curve.append(float(loss_sum) / max(len(tr), 1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            val_curve.append(_mse(model, xt, yt, va))
        if val_curve[-1] is not None and (best_val is None or val_curve[-1] < best_val):
            best_epoch, best_val = len(val_curve), val_curve[-1]
            if select == "best_val":
                best_state = snapshot(model)
        if bar:
            bar.update(1)
            bar.set_postfix(train=f"{train_curve[-1]:.2e}", val=f"{val_curve[-1] or float('nan'):.2e}")
        if on_epoch is not None:
            on_epoch(epoch_record(epoch, epochs, train_curve, val_curve, best_epoch, best_val))
        if should_stop is not None and should_stop():
            stopped = True
            break
    if bar:
        bar.close()
    done = len(train_curve)
    selected_epoch = done
    if best_state is not None and best_epoch != done:
        model.load_state_dict(best_state)
        selected_epoch = best_epoch
    model.eval()
    train_s = time.perf_counter() - t_train
    metrics = {
        "train_loss": train_curve[-1] if train_curve else None,  # final MSE (the curves are *_curve)
        "val_loss": val_curve[-1] if val_curve else None,
        "train_loss_curve": train_curve,
        "val_loss_curve": val_curve,
        "epoch": done,
        "epochs": epochs,
        "select": select,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "selected_epoch": selected_epoch,  # whose weights the checkpoint holds
        "selected_val_loss": val_curve[selected_epoch - 1] if val_curve and selected_epoch else None,
        "stopped": stopped,
        "n_train": int(len(train_rows)),
        "n_val": int(len(val_rows)),
        "dim": int(d),
        "params": model.num_parameters(),
        "batch_size": batch_size,
        "lr": lr,
        "train_s": round(train_s, 3),
        "samples_per_s": round(done * len(train_rows) / train_s, 1) if train_s > 0 else None,
        "fit_s": round(time.perf_counter() - t0, 3),
        "torch_threads": torch.get_num_threads(),
        "precision": precision,
        "head": head,
        "hidden_sizes": model.head_cfg["hidden_sizes"],
        "lr_schedule": lr_schedule,
    }
    return model, metrics


def train_bc(
    cfg: TrainBCRequest,
    run,
    features: FeatureSource,
    store: Store,
    progress: bool = False,
    precision: str | None = None,
) -> dict:
    """Train BC for `cfg` on `features` of `cfg.dataset`; write `run.dir/policy.safetensors`; return metrics.

    Reports {"epoch", "epochs", "train_loss", "val_loss", ...curves} with `run.update(metrics=...)` every epoch
    and stops early when `run.stop_requested()`. The caller owns the run's status (running/succeeded/failed).
    `precision` as in `fit_bc` (default fp32). Live curves (loss/train, loss/val per epoch) go to TensorBoard event
    files in run.dir, and to W&B where asked for (vjepa_robot_lab/learning/curves.py).

    `cfg.readout` (the registry, vjepa_robot_lab/perception/readouts/): `features` is wrapped with the readout
    first (fusions of consecutive steps' embeddings, or the dataset's g x g token grids), and a learned readout's
    network (a pooler over the grid) is trained with the MLP. A dataset that holds mean embeddings only has its grids
    embedded first, said in the run's `phase`.
    """
    if isinstance(features, PixelFeatures):  # features=pixels: a conv encoder trained with the policy (pixels.py)
        return train_bc_pixels(cfg, run, features, store)
    t0 = time.perf_counter()
    readout = get_readout(cfg.readout)
    features = readout.wrap(features, cfg.grid_size)
    if hasattr(features, "on_progress"):  # a grid stream says when it embeds the grids first: the run's phase
        features.on_progress = lambda message: run.update(metrics={"phase": message})
    pooler = readout.network_config(features)  # a learned readout's network shape, or None
    table, actions = load_bc_data(store, cfg.dataset, features)
    if readout.phase:  # its input is in hand: the phase moves on from "embedding the ... grids first"
        run.update(metrics={"phase": readout.phase})
    pull_s = time.perf_counter() - t0
    if len(table) == 0:
        raise ValueError(f"dataset {cfg.dataset!r} has no steps: nothing to clone")
    train_rows, val_rows = split_by_episode(table.episode, cfg.val_fraction, cfg.seed)
    val_episodes = np.unique(table.episode[val_rows]).tolist()

    def on_epoch(m: dict) -> None:
        run.update(metrics=m)
        curves.log({"loss/train": m["train_loss"], "loss/val": m["val_loss"]}, step=m["epoch"])  # live curves

    with open_curves(run.dir, run_id=run.run_id, kind="bc", config=cfg.model_dump(mode="json")) as curves:
        model, metrics = fit_bc(
            table.x,
            actions,
            train_rows,
            val_rows,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed,
            on_epoch=on_epoch,
            should_stop=run.stop_requested,
            progress=progress,
            precision=precision,
            select=getattr(cfg, "select", "best_val"),
            pooler=pooler,
            head=getattr(cfg, "head", "findings"),
            hidden_sizes=getattr(cfg, "hidden_sizes", None),
            lr_schedule=getattr(cfg, "lr_schedule", "cosine"),
        )
    metrics.update(
        readout=cfg.readout.value,
        pooler=network_entry(pooler)[1] if pooler is not None else None,
        pull_s=round(pull_s, 3),
        pull_gb_per_s=round(table.x.nbytes / 1e9 / pull_s, 3) if pull_s > 0 else None,
        n_train_episodes=int(len(np.unique(table.episode[train_rows]))),
        n_val_episodes=len(val_episodes),
        wall_s=round(time.perf_counter() - t0, 3),
        **({"phase": "trained"} if readout.phase else {}),
    )
    lineage = checkpoint_lineage(cfg, run, table.lineage, val_episodes, metrics)
    metrics["checkpoint"] = str(save_bc_policy(Path(run.dir) / CHECKPOINT_NAME, model, lineage))
    run.update(metrics=metrics)
    return metrics


def checkpoint_lineage(cfg, run, features_lineage, val_episodes: list, metrics: dict) -> dict:
    """What a BC checkpoint records beside its weights: run, dataset, features, config, validation episodes, and the
    metrics without their curves."""
    return {
        "kind": "bc",
        "run_id": run.run_id,
        "dataset": cfg.dataset,
        "features": features_lineage,
        "config": cfg.model_dump(mode="json"),
        "val_episodes": val_episodes,
        "metrics": {k: v for k, v in metrics.items() if not k.endswith("_curve")},
    }


def train_bc_pixels(cfg, run, features: PixelFeatures, store: Store) -> dict:
    """train_bc for features=pixels (perception/pixels.py): the frames of cfg.dataset, the conv encoder and the MLP
    trained together; writes <run.dir>/policy.safetensors (format vjepa-robot-bc-pixels-v1); returns the metrics."""
    t0 = time.perf_counter()
    table = features.offline(store, cfg.dataset)
    steps = store.read_steps(cfg.dataset, ["action"])
    if not (
        np.array_equal(steps.column("episode").to_numpy(), table.episode)
        and np.array_equal(steps.column("step").to_numpy(), table.step)
    ):
        raise ValueError(f"frames and actions of dataset {cfg.dataset!r} do not cover the same (episode, step) rows")
    width = steps.schema.field("action").type.list_size
    actions = fixed_list_to_numpy(steps.column("action"), width).astype(np.float32)
    pull_s = time.perf_counter() - t0
    if len(table) == 0:
        raise ValueError(f"dataset {cfg.dataset!r} has no steps: nothing to clone")
    index = stack_index(table.episode, table.step, features.frames)
    train_rows, val_rows = split_by_episode(table.episode, cfg.val_fraction, cfg.seed)
    val_episodes = np.unique(table.episode[val_rows]).tolist()

    with open_curves(run.dir, run_id=run.run_id, kind="bc", config=cfg.model_dump(mode="json")) as curves:

        def on_epoch(m: dict) -> None:
            run.update(metrics=m)
            curves.log({"loss/train": m["train_loss"], "loss/val": m["val_loss"]}, step=m["epoch"])

        model, metrics = fit_pixel_bc(
            table.x,
            index,
            actions,
            train_rows,
            val_rows,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed,
            on_epoch=on_epoch,
            should_stop=run.stop_requested,
            select=getattr(cfg, "select", "best_val"),
        )
    metrics.update(
        readout=DEFAULT_READOUT,  # the conv encoder's output, read as it is
        pooler=None,
        pull_s=round(pull_s, 3),
        n_train_episodes=int(len(np.unique(table.episode[train_rows]))),
        n_val_episodes=len(val_episodes),
        wall_s=round(time.perf_counter() - t0, 3),
    )
    lineage = checkpoint_lineage(cfg, run, table.lineage, val_episodes, metrics)
    metrics["checkpoint"] = str(save_pixel_policy(Path(run.dir) / CHECKPOINT_NAME, model, lineage))
    run.update(metrics=metrics)
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints (safetensors only: loading never unpickles)
# ----------------------------------------------------------------------------------------------------------------


def save_bc_policy(path: Path, model: BCPolicy, lineage: dict) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": CHECKPOINT_FORMAT, "dim": str(model.dim), "lineage": json.dumps(lineage, default=json_default)}
    if model.pooler is not None:  # a learned readout: its network's shape, to rebuild it
        key, state = network_entry(model.pooler.cfg)
        meta[key] = json.dumps(state)
    if model.head_cfg["head"] != "findings" or model.head_cfg["hidden_sizes"]:  # the MLP's shape, to rebuild it
        meta["head"] = json.dumps(model.head_cfg)
    if model.action_dim != ACTION_DIM:  # a task other than reacher (reacher's checkpoints stay as they were)
        meta["action_dim"] = str(model.action_dim)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint
    return path


class LoadedBCPolicy(LoadedPolicy):
    """A trained BC policy as a plain function: (B, D) float32 features -> (B, A) float32 actions.

    `.readout` and `.grid_size` say which features it reads (evaluate.FeaturePolicy wraps its source with them):
    (B, D) rows of the readout's width -- flat grids (B, G*D) also as (B, G, D)."""

    def __init__(self, model: BCPolicy, lineage: dict, path: Path):
        config = lineage.get("config") or {}
        own = lineage.get("features")  # the feature source's lineage (a dict), or its name in older checkpoints
        features = (own.get("features") if isinstance(own, dict) else own) or config.get("features")
        super().__init__(
            dim=model.dim,
            readout=config.get("readout", DEFAULT_READOUT),  # checkpoints from before readouts: mean
            grid_size=int(config.get("grid_size") or DEFAULT_GRID_SIZE),
            features=features,
            task=config.get("task"),
        )
        self.model, self.lineage, self.path = model, lineage, path

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:  # (B, G, D) grids
            x = x.reshape(len(x), -1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"BC policy expects features of shape (B, {self.dim}), got {x.shape} "
                f"(one row: x[None] ; features {self.lineage.get('features', {}).get('features')!r}, "
                f"readout {self.readout!r})"
            )
        return self.model(torch.from_numpy(np.ascontiguousarray(x))).numpy().astype(np.float32, copy=False)


def load_bc_policy(run_dir: Path | str) -> LoadedBCPolicy:
    """Load `<run_dir>/policy.safetensors` (or that file itself) into an eval-mode policy function."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(run_dir)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no BC checkpoint at {path}: train one first (POST /train/bc)")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if is_pixel_checkpoint(meta):  # features=pixels: the conv encoder and the MLP (pixels.py)
        return load_pixel_policy(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a BC checkpoint (format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    state = load_file(str(path))
    pooler = saved_network(meta)  # a learned readout's network config, from its config_key ("pooler"), or None
    head = json.loads(meta["head"]) if meta.get("head") else {}  # absent: the findings' MLP
    action_dim = int(meta.get("action_dim", ACTION_DIM))
    model = BCPolicy(int(meta["dim"]), action_dim=action_dim, pooler=pooler, **head)
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedBCPolicy(model, json.loads(meta.get("lineage", "{}")), path)


__all__ = [
    "BCPolicy",
    "fit_bc",
    "train_bc",
    "load_bc_policy",
    "save_bc_policy",
    "load_bc_data",
    "split_by_episode",
    "LoadedBCPolicy",
    "CHECKPOINT_NAME",
]
