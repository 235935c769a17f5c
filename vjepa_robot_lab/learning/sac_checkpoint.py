"""SAC checkpoints: run.dir/sac/, replaced atomically, no pickle anywhere.

    save(run_dir, tensors, optim, state, replay=None)   # write sac.new/, then swap it in by rename
    ckpt = load(run_dir)                                 # Checkpoint(path, tensors, optim, state)
    update_state(run_dir, final_eval=...)                # amend state.json (atomic replace)

A checkpoint directory holds:
    policy.safetensors   every network tensor (actor, critics, target critics, entropy temperature, input scaling)
    optim.pt             the optimizers' state dicts: plain tensors and numbers, loaded with weights_only=True
    state.json           counters, learning curve, config, feature lineage, replay position
    replay_*.npy         the filled part of the replay buffer (optional; allow_pickle=False)

A crash leaves either the old or the new checkpoint complete: the new one is written beside it and swapped
in by two renames; `path()` falls back to `sac.old` if the crash hit between them. state.json is written by
`_write_state` only.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

CHECKPOINT_DIR = "sac"  # run.dir/sac (the runs directory layout)
SB3_FORMAT = 1  # state.json "format" of checkpoints written through stable-baselines3 (no longer a dependency)


class UnsupportedCheckpoint(ValueError):
    """A checkpoint this trainer cannot load (a stable-baselines3 one, format 1)."""


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor]
    optim: dict
    state: dict


def _write_state(d: Path, state: dict) -> None:
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, d / "state.json")


def save(run_dir: Path, tensors: dict[str, torch.Tensor], optim: dict, state: dict, replay=None) -> Path:
    """Write run_dir/sac atomically; `replay` (a replay.Replay) is saved with it when given."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    new, cur, old = run_dir / f"{CHECKPOINT_DIR}.new", run_dir / CHECKPOINT_DIR, run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(new / "policy.safetensors"))
    torch.save(optim, new / "optim.pt")
    state = {**state, "replay": {"saved": replay is not None, **(replay.save_npy(new) if replay is not None else {})}}
    _write_state(new, state)
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        cur.rename(old)
    new.rename(cur)
    shutil.rmtree(old, ignore_errors=True)
    return cur


def path(run_dir: Path) -> Path | None:
    """The latest complete checkpoint (falls back to .old if a crash hit between the two renames)."""
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):
        p = Path(run_dir) / name
        if (p / "state.json").exists():
            return p
    return None


def load_state(run_dir: Path) -> dict:
    p = path(run_dir)
    if p is None:
        raise FileNotFoundError(f"no SAC checkpoint under {run_dir}: train first (POST /train/sac)")
    return json.loads((p / "state.json").read_text())


def load(run_dir: Path, with_optim: bool = True) -> Checkpoint:
    from safetensors.torch import load_file

    state = load_state(run_dir)
    p = path(run_dir)
    if int(state.get("format", SB3_FORMAT)) == SB3_FORMAT:
        raise UnsupportedCheckpoint(
            f"{p} is a stable-baselines3 SAC checkpoint (format {SB3_FORMAT}), written by an older trainer; this "
            "trainer no longer carries stable-baselines3 and cannot load or resume it: train the run again "
            "(POST /train/sac with the same config)"
        )
    optim = torch.load(p / "optim.pt", weights_only=True) if with_optim else {}
    return Checkpoint(p, load_file(str(p / "policy.safetensors")), optim, state)


def update_state(run_dir: Path, **fields) -> None:
    """Amend the latest checkpoint's state.json (e.g. with the final evaluation)."""
    p = path(run_dir)
    _write_state(p, {**json.loads((p / "state.json").read_text()), **fields})
