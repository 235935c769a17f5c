"""State-SAC experts shipped with the package: the demonstrator `shipped` on every task that has one.

    shipped_tasks()                           # the tasks with a shipped expert
    source = shipped_source("walker-walk")    # a RunExpertSource: RunExpert(source) acts, datasets record it
    record = shipped_record("walker-walk")    # how it was trained and how well it does, beside the published level
    export_expert(run_dir, "walker-walk", record)   # a trained SAC run's actor -> expert_checkpoints/<task>/

Each expert is a directory `expert_checkpoints/<task>/`:
    sac/policy.safetensors   the actor and its input scaling only (the critics, their targets and the optimiser
                             state are dropped: ~0.1 MB instead of ~0.5 MB plus optim.pt)
    sac/state.json           the training run's state.json (config, learning curve, final evaluation):
                             learning.sac.policy_from_checkpoint rebuilds the actor from these two files
    record.json              the training command, its wall time and machine, the held-out evaluation (training
                             seeds and evaluation episodes no choice was made on) and the published reference
A dataset made by `shipped` records the checkpoint's sha256 in its meta (`expert_run`), so a changed expert is
visible in the lineage. bench/ship_experts.py trains and exports them; docs/experts.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from vjepa_robot_client.contract import SHIPPED_EXPERT
from vjepa_robot_lab.envs.tasks import task_spec
from vjepa_robot_lab.policies.run_experts import ExpertRefused, RunExpertSource

ROOT = Path(__file__).resolve().with_name("expert_checkpoints")
POLICY_FILE = "policy.safetensors"

# State SAC's published returns on these tasks, by env steps: TD-MPC2's SAC baseline (Hansen et al. 2024, "TD-MPC2",
# github.com/nicklashansen/tdmpc2 results/sac/<task>.csv at e9f5932; state observations, 3 seeds each). Mean and
# standard deviation over its seeds, read from those CSVs on this machine.
TDMPC2_SAC = "TD-MPC2's SAC baseline on states (Hansen et al. 2024; tdmpc2 results/sac/<task>.csv, e9f5932, 3 seeds)"
PUBLISHED_STATE_SAC: dict[str, dict[int, tuple[float, float]]] = {
    "walker-stand": {100_000: (341, 115), 200_000: (739, 343), 500_000: (939, 28), 1_000_000: (949, 23)},
    "walker-walk": {100_000: (708, 204), 200_000: (923, 6), 500_000: (953, 5), 1_000_000: (957, 4)},
    "cheetah-run": {100_000: (310, 65), 200_000: (574, 0), 500_000: (595, 173), 1_000_000: (730, 3)},
    "finger-spin": {100_000: (762, 17), 200_000: (807, 26), 500_000: (873, 76), 1_000_000: (878, 66)},
    "easy": {100_000: (540, 410), 200_000: (715, 81), 500_000: (918, 62), 1_000_000: (914, 113)},
    "hard": {100_000: (161, 188), 200_000: (197, 193), 500_000: (517, 305), 1_000_000: (928, 47)},
}


def published_at(task: str, env_steps: int) -> dict | None:
    """The published state-SAC return at the largest reported budget <= env_steps (and at 1M), or None."""
    table = PUBLISHED_STATE_SAC.get(task_spec(task).name)
    if not table:
        return None
    at = max((s for s in table if s <= env_steps), default=min(table))
    mean, sd = table[at]
    top = max(table)
    return {"source": TDMPC2_SAC, "env_steps": at, "mean": mean, "sd": sd, "at_1m": table[top][0]}


def shipped_dir(task: str, root: Path = ROOT) -> Path | None:
    """The task's expert directory, or None when the package ships none for it."""
    d = Path(root) / task_spec(task).name
    return d if (d / "sac" / POLICY_FILE).is_file() and (d / "sac" / "state.json").is_file() else None


def shipped_tasks(root: Path = ROOT) -> tuple[str, ...]:
    """Every task with a shipped expert, in the task registry's order."""
    from vjepa_robot_lab.envs.tasks import TASK_SPECS

    return tuple(t for t in TASK_SPECS if shipped_dir(t, root) is not None)


def shipped_record(task: str, root: Path = ROOT) -> dict:
    d = shipped_dir(task, root)
    if d is None:
        raise _missing(task, root)
    path = d / "record.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def checkpoint_sha256(d: Path) -> str:
    return hashlib.sha256((Path(d) / "sac" / POLICY_FILE).read_bytes()).hexdigest()


def shipped_sha256(task: str, root: Path = ROOT) -> str | None:
    """The checkpoint hash of the task's shipped expert; None when it has none."""
    d = shipped_dir(task, root)
    return checkpoint_sha256(d) if d is not None else None


def _missing(task: str, root: Path) -> ExpertRefused:
    have = ", ".join(shipped_tasks(root)) or "none"
    name = task_spec(task).name
    return ExpertRefused(
        422,
        f"no shipped expert for task {name} (shipped: {have}): train state SAC on it "
        f"(vjepa-robot train sac --task {name} --features state) and name that run as the expert, run:RUN_ID",
    )


def shipped_source(task: str, root: Path = ROOT) -> RunExpertSource:
    """The RunExpertSource of the task's shipped expert; ExpertRefused (422) naming the tasks that have one."""
    d = shipped_dir(task, root)
    if d is None:
        raise _missing(task, root)
    state = json.loads((d / "sac" / "state.json").read_text())
    final = (state.get("final_eval") or {}).get("mean_return")
    sha = checkpoint_sha256(d)
    return RunExpertSource(
        run_id=f"{SHIPPED_EXPERT}-{task_spec(task).name}-{sha[:12]}",
        kind="sac",
        run_dir=str(d),
        task=task_spec(task).name,
        action_repeat=int(state["config"]["action_repeat"]),
        final_return=float(final) if final is not None else None,
        name=SHIPPED_EXPERT,
        checkpoint_sha256=sha,
    )


def export_expert(run_dir: str | Path, task: str, record: dict, root: Path = ROOT) -> Path:
    """Copy a trained SAC run's actor (and its input scaling) and state.json into root/<task>/, with `record`
    as record.json; written beside and swapped in by rename, so a crash leaves the old expert or the new one."""
    from safetensors.torch import load_file, save_file

    from vjepa_robot_lab.learning import sac_checkpoint

    ck = sac_checkpoint.path(Path(run_dir))
    if ck is None:
        raise FileNotFoundError(f"no SAC checkpoint under {run_dir}")
    state = json.loads((ck / "state.json").read_text())
    if state["config"].get("features") != "state" or task_spec(state["config"]["task"]).name != task_spec(task).name:
        raise ValueError(f"{run_dir} is not a state-feature SAC run on {task}")
    tensors = {k: v for k, v in load_file(str(ck / POLICY_FILE)).items() if k.startswith("actor.")}
    name = task_spec(task).name
    new, cur = Path(root) / f".{name}.new", Path(root) / name
    shutil.rmtree(new, ignore_errors=True)
    (new / "sac").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(new / "sac" / POLICY_FILE))
    state = {k: v for k, v in state.items() if k != "replay"} | {"replay": {"saved": False}}
    (new / "sac" / "state.json").write_text(json.dumps(state, indent=1))
    (new / "record.json").write_text(json.dumps({**record, "sha256": checkpoint_sha256(new)}, indent=1) + "\n")
    old = Path(root) / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        os.replace(cur, old)
    os.replace(new, cur)
    shutil.rmtree(old, ignore_errors=True)
    return cur
