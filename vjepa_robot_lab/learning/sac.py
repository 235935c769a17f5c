"""Soft Actor-Critic on frozen features: the public names, and loading a trained policy.

    features = make_feature_source("state")                    # or "vjepa2" (encoder over HTTP) / "random"
    metrics = train_sac(TrainSACRequest(), run, features)      # blocks; checkpoints into run.dir
    metrics = train_sac(cfg, run, features, resume=True)       # continues from the last checkpoint
    act = policy_from_checkpoint(run.dir)                      # (B, D) float32 -> (B, A) deterministic actions

Split as DrQ-v2 splits drqv2.py and train.py:
    sac_agent.py       the agent (SAC: actor, twin critics and their targets, temperature, the optional attentive
                       pooler; act, update_critic, update_actor_and_alpha, update, state_dict), its networks and the
                       named network configurations (Nets, NETWORKS)
    sac_workspace.py   the run (SACWorkspace: seeding, envs, replay, the step loop, evaluation, progress, curves,
                       checkpoint save and resume) and train_sac
    sac_checkpoint.py  the checkpoint files; replay.py the replay buffer
This module re-exports their public names (imported from here by the trainer, the run kinds, bench/ and tests) and
rebuilds a trained actor from a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vjepa_robot_client.contract import DEFAULT_GRID_SIZE
from vjepa_robot_lab.learning import sac_checkpoint
from vjepa_robot_lab.learning.sac_agent import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    NET_ARCH,
    NETWORKS,
    SAC,
    Actor,
    Nets,
    ObsScale,
    TwinLayerNorm,
    TwinLinear,
    TwinQ,
    TwinResidual,
    default_networks,
    linear_lr,
    mlp,
    network_config,
    network_name,
)
from vjepa_robot_lab.learning.sac_workspace import (
    CHECKPOINT_FORMAT,
    Every,
    EverySeconds,
    Progress,
    RunLike,
    SACWorkspace,
    evaluate_actor,
    train_sac,
)
from vjepa_robot_lab.perception.readouts import DEFAULT_READOUT, readout_of_network, saved_network
from vjepa_robot_lab.policies.loaded import LoadedPolicy

checkpoint_path = sac_checkpoint.path  # the latest complete checkpoint of a run directory (or None)

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "NETWORKS",
    "NET_ARCH",
    "SAC",
    "Actor",
    "Every",
    "EverySeconds",
    "Nets",
    "ObsScale",
    "Progress",
    "RunLike",
    "SACWorkspace",
    "TwinLayerNorm",
    "TwinLinear",
    "TwinQ",
    "TwinResidual",
    "checkpoint_path",
    "default_networks",
    "evaluate_actor",
    "linear_lr",
    "mlp",
    "network_config",
    "network_name",
    "policy_from_checkpoint",
    "train_sac",
]


def policy_from_checkpoint(run_dir: str | Path) -> LoadedPolicy:
    """Deterministic actor of a SAC run: (B, D) float32 features -> (B, A) actions in [-1, 1] (A: its task's).

    Rebuilt from policy.safetensors and state.json alone (no env, no pickle). The LoadedPolicy's `.dim`,
    `.features`, `.readout`, `.action_repeat` and `.episode_steps` say how to feed it.
    """
    ck = sac_checkpoint.load(Path(run_dir), with_optim=False)
    dim = int(ck.state["dim"])
    if int(ck.state.get("format", 1)) == 1:  # stable-baselines3's names: policy.actor.{latent_pi,mu,log_std}.*
        hidden, prefix = NET_ARCH, "policy.actor."
    else:
        hidden, prefix = tuple(ck.state["nets"]["actor"]), "actor."
    pooler = None
    net_cfg = saved_network(ck.state)  # a learned readout: its network reads the features before the actor
    if net_cfg is not None:
        pooler = readout_of_network(net_cfg).network(net_cfg)
        pooler.load_state_dict({k[len("pooler.") :]: v for k, v in ck.tensors.items() if k.startswith("pooler.")})
        pooler.eval()
    own = {k[len(prefix) :]: v for k, v in ck.tensors.items() if k.startswith(prefix)}
    actor = Actor(pooler.out_dim if pooler is not None else dim, hidden, int(own["mu.weight"].shape[0]))  # (A, H)
    missing, unexpected = actor.load_state_dict(own, strict=False)  # format 1 has no input scaling: identity
    if unexpected or any(not k.startswith("scale.") for k in missing):
        raise ValueError(f"{run_dir}: actor tensors do not match (missing {missing}, unexpected {unexpected})")
    actor.eval()

    @torch.no_grad()
    def act(x: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), dim))
        return actor.deterministic(pooler(obs) if pooler is not None else obs).numpy()

    cfg = ck.state["config"]
    return LoadedPolicy(
        act,
        dim=dim,
        readout=cfg.get("readout", DEFAULT_READOUT),
        grid_size=int(cfg.get("grid_size") or DEFAULT_GRID_SIZE),
        features=cfg["features"],
        task=cfg.get("task", "easy"),
        action_repeat=int(cfg["action_repeat"]),
        episode_steps=int(cfg["episode_steps"]),
    )
