"""The SAC agent: its networks, one gradient step, acting, and the tensors of a snapshot (DrQ-v2's drqv2.py).

    agent = SAC(dim, cfg, network_config(cfg.networks, cfg.features))   # cfg: a TrainSACRequest
    actions = agent.act(obs)                          # (B, D) float32 -> (B, A) sampled; sample=False: tanh(mean)
    metrics = agent.update(replay.sample(256, rng), env_steps)   # critics, actor and temperature, target critics
    snapshot = agent.state_dict()                     # {"tensors", "optim", "updates"}; load_state_dict(snapshot)

No env, no loop, no files: the training loop, evaluation and checkpoint files are sac_workspace.py, the replay
buffer replay.py. File order: network configurations, networks, the agent.

Algorithm (Haarnoja et al. 2018, "SAC: algorithms and applications", with automatic entropy tuning):
twin Q critics and their Polyak-averaged targets, a tanh-squashed Gaussian actor, a learned temperature alpha
driven towards the target entropy -dim(A), n-step returns in the critic target (DrQ-v2). Networks: the findings'
[256, 64] hidden layers for actor and critics; on `state` features the inputs are scaled by the warm-up
observations' mean and std (`Nets.normalize_obs`), which took the failing seeds of the state oracle over 900
(bench/SAC_RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_client.contract import sac_default_networks as default_networks
from vjepa_robot_lab.envs.tasks import task_spec
from vjepa_robot_lab.envs.vec_env import ACTION_DIM
from vjepa_robot_lab.perception.readouts import readout_of_network

NET_ARCH = (256, 64)  # the findings' actor and critic hidden sizes (Phase 2)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # clamp of the actor's log standard deviation (as stable-baselines3)


# ----------------------------------------------------------------------------------------------------------------
# Network configurations
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Nets:
    """Network shape and input scaling (not part of the wire request: fixed per code version, saved with runs)."""

    actor: tuple[int, ...] = NET_ARCH
    critic: tuple[int, ...] = NET_ARCH
    # Scale every input by the mean/std of the warm-up (random-action) observations, then freeze the scaling.
    # None: on for `state` features, where it took the 5-seed oracle over 900 (bench/SAC_RESULTS.md, "Why seeds
    # fail"); off for `vjepa2`/`random`, where it was not measured.
    normalize_obs: bool | None = None
    # "mlp": Linear-ReLU critics over `critic`; "ln": Linear-LayerNorm-ReLU over `critic` (RLPD's critic);
    # "bro": BRO's critic: Linear(critic[0])-LayerNorm-ReLU, then `critic_blocks` LayerNorm'd residual blocks of
    # that width, then Linear(1)
    critic_kind: str = "mlp"
    critic_blocks: int = 0


# The named network configurations (TrainSACRequest.networks; bench/SAC_RESULTS.md measures each on 5 seeds).
NETWORKS = {
    # the first study's [256, 64] actor and critics (the findings; the seed's Phase 2 plan uses them)
    "findings": Nets(),
    # BRO (Nauman et al. 2024, "Bigger, Regularized, Optimistic", BroNet critic: Dense-LN-ReLU, then residual
    # blocks Dense-LN-ReLU-Dense-LN + skip; 512 wide, 2 blocks there) cut to width 128 and 1 block for this CPU
    # (one torch thread: 256 x 2 blocks ran 4.5x slower per update than the findings' nets, 128 x 1 ~1.5-2x);
    # the actor stays the findings'. LayerNorm in the critic bounds how far Q extrapolates off the data (Ball et
    # al. 2023, RLPD, section 4.1): the near-target failure is a folded pose valued above the goal next to it.
    "bro": Nets(critic=(128,), critic_kind="bro", critic_blocks=1),
    # the findings' sizes with a LayerNorm after each hidden Linear of the critics (RLPD, Ball et al. 2023, section
    # 4.1: LayerNorm keeps Q from extrapolating above the values seen in the data), at ~the findings' cost
    "ln": Nets(critic_kind="ln"),
    # `ln` without the warm-up input scaling (issue 30): on finger-spin the scaled runs plateaued at ~380-440, this one
    # passed 560 by 60k steps; on walker-walk the scaled run was ahead instead (bench/SAC_RESULTS.md, shipped experts)
    "ln-raw": Nets(critic_kind="ln", normalize_obs=False),
}
# The configuration a request without `networks` gets, per feature source. A configuration becomes a default only
# by the 5-seed bar on the stratified evaluation (bench/SAC_RESULTS.md, issue 22): `ln`, with reacher's 200-step
# training episodes, cleared it on `state`; the other sources keep the findings' nets (the seed's Phase 2 plan) and
# can ask for `ln` or `bro` by name. The mapping is the contract's (SAC_DEFAULT_NETWORKS, sac_default_networks),
# which also fills a request's omitted `networks` with it.


def network_name(name: str | None, features: str | None = None) -> str:
    """A configuration's name (a SACNetworks or its value; None: the default for `features`)."""
    return getattr(name, "value", name) or default_networks(features)


def linear_lr(cfg: TrainSACRequest, env_steps: int) -> float:
    """SimbaV2's schedule (Lee et al. 2025: the learning rate decays linearly over training): `lr` when updates
    start (learning_starts), `lr_final` at total_steps. A function of env steps only, so a resumed run continues
    the same schedule."""
    span = max(cfg.total_steps - cfg.learning_starts, 1)
    frac = min(max((env_steps - cfg.learning_starts) / span, 0.0), 1.0)
    return cfg.lr + (cfg.lr_final - cfg.lr) * frac


def network_config(name: str | None, features: str | None = None) -> Nets:
    """The Nets of a named configuration (None: the default for `features`); ValueError naming the choices."""
    name = network_name(name, features)
    if name not in NETWORKS:
        raise ValueError(f"unknown networks {name!r}: choose one of {', '.join(NETWORKS)}")
    return NETWORKS[name]


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear-ReLU layers over `sizes`, with a ReLU after every layer (heads are added by the caller)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class ObsScale(nn.Module):
    """x -> (x - mean) / std with fixed buffers: identity until fitted on the warm-up observations."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("fitted", torch.zeros(()))  # saved with the checkpoint: fit once per run

    def fit(self, x: np.ndarray) -> None:  # (N, D)
        self.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(x.std(0), dtype=torch.float32).clamp_min(1e-3))
        self.fitted.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Actor(nn.Module):
    """obs (B, D) -> a tanh-squashed Gaussian over actions (B, A) in [-1, 1] (A: the task's action_dim)."""

    def __init__(self, dim: int, hidden: tuple[int, ...], action_dim: int = ACTION_DIM):  # A: tasks.py action_dim
        super().__init__()
        self.scale = ObsScale(dim)
        self.latent_pi = mlp([dim, *hidden])
        self.mu = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)
        self.generator: torch.Generator | None = None  # the run's own noise stream (None: torch's global one)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.latent_pi(self.scale(obs))
        return self.mu(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action (B, 2) and its log-probability (B, 1), tanh change of variables included."""
        mu, log_std = self(obs)
        u = mu + log_std.exp() * torch.randn(mu.shape, dtype=mu.dtype, generator=self.generator)
        action = torch.tanh(u)
        gauss = -0.5 * ((u - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        log_prob = (gauss - torch.log(1 - action**2 + 1e-6)).sum(-1, keepdim=True)
        return action, log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class TwinLinear(nn.Module):
    """Two independent Linear layers applied as one batched matmul: (2, B, in) -> (2, B, out)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        bound = 1 / math.sqrt(n_in)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(2, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(2, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinLayerNorm(nn.Module):
    """LayerNorm over the last dim of (2, B, n), with each critic's own gain and bias."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 1, n))
        self.bias = nn.Parameter(torch.zeros(2, 1, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:]), self.weight)


class TwinResidual(nn.Module):
    """BRO's residual block on (2, B, n): x + LN(Linear(ReLU(LN(Linear(x)))))."""

    def __init__(self, n: int):
        super().__init__()
        self.f = nn.Sequential(TwinLinear(n, n), TwinLayerNorm(n), nn.ReLU(), TwinLinear(n, n), TwinLayerNorm(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class TwinQ(nn.Module):
    """Two independent critics Q1, Q2: (obs (B, D), action (B, 2)) -> (B, 1) each, computed side by side."""

    def __init__(
        self, dim: int, hidden: tuple[int, ...], action_dim: int = ACTION_DIM, kind: str = "mlp", blocks: int = 0
    ):
        super().__init__()
        self.scale = ObsScale(dim)
        if kind == "bro":  # Nets.critic_kind: BRO's critic, width hidden[0]
            w = hidden[0]
            body = [TwinLinear(dim + action_dim, w), TwinLayerNorm(w), nn.ReLU()]
            self.q = nn.Sequential(*body, *[TwinResidual(w) for _ in range(blocks)], TwinLinear(w, 1))
            return
        if kind not in ("mlp", "ln"):
            raise ValueError(f"unknown critic kind {kind!r}: choose mlp, ln or bro")
        sizes = [dim + action_dim, *hidden, 1]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [TwinLinear(a, b)] + ([TwinLayerNorm(b)] if kind == "ln" else []) + [nn.ReLU()]
        self.q = nn.Sequential(*layers[: -2 if kind == "ln" else -1])  # the output layer: no LayerNorm, no ReLU

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.scale(obs), action], dim=-1)
        q = self.q(x.expand(2, *x.shape))  # (2, B, 1)
        return q[0], q[1]


# ----------------------------------------------------------------------------------------------------------------
# The agent: networks, optimizers, acting and one gradient step
# ----------------------------------------------------------------------------------------------------------------


class SAC:
    """Twin critics, actor, temperature; with `pooler` (readout attentive) one AttentivePooler reads the token grids
    for both.

    The pooler is shared by actor and critics and trained by the critic loss only, as DrQ-v2 trains its image
    encoder (drqv2.py: the encoder's optimiser steps with the critic's, the actor gets `obs.detach()`): the actor's
    gradient through a shared encoder fights the critic's and destabilises it (DrQ-v2, section 3; SAC-AE, Yarats et
    al. 2019, found the same for a pixel autoencoder). The next observations are pooled by the same pooler under
    no_grad (DrQ-v2 keeps no target encoder either). Flat (B, G*D) grids go in the replay buffer.

    The actor's noise comes from `actor.generator` (None: torch's global stream); the caller seeds it.
    """

    def __init__(self, dim: int, cfg: TrainSACRequest, nets: Nets, pooler=None):
        self.cfg, self.gamma, self.tau = cfg, cfg.gamma, cfg.tau
        # a learned readout's network (attentive: its AttentivePooler), built by the readout registry
        self.pooler = readout_of_network(pooler).network(pooler) if pooler is not None else None
        dim = self.pooler.out_dim if self.pooler is not None else dim  # actor and critics read the pooled vector
        self.action_dim = task_spec(cfg.task).action_dim  # reacher 2, walker 6 (vjepa_robot_lab/envs/tasks.py)
        self.actor = Actor(dim, nets.actor, self.action_dim)
        self.critic = TwinQ(dim, nets.critic, self.action_dim, nets.critic_kind, nets.critic_blocks)
        self.critic_target = TwinQ(dim, nets.critic, self.action_dim, nets.critic_kind, nets.critic_blocks)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.target_entropy = -float(self.action_dim)  # -|A|, SAC's heuristic
        self.log_alpha = torch.tensor([math.log(cfg.init_entropy_coef)], requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        critic_params = list(self.critic.parameters()) + (list(self.pooler.parameters()) if self.pooler else [])
        self.critic_opt = torch.optim.Adam(critic_params, lr=cfg.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.updates = 0

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> themselves; (B, G*D) grids -> (B, D) through the pooler."""
        return self.pooler(obs) if self.pooler is not None else obs

    @torch.no_grad()
    def act(self, obs: np.ndarray, sample: bool = True) -> np.ndarray:
        """(B, D) float32 -> (B, A) actions in [-1, 1]: sampled while training, tanh(mean) with sample=False."""
        x = self.embed(torch.as_tensor(np.asarray(obs, np.float32)))
        return (self.actor.sample(x)[0] if sample else self.actor.deterministic(x)).numpy()

    def fit_obs_scale(self, obs: np.ndarray) -> None:
        for m in (self.actor.scale, self.critic.scale, self.critic_target.scale):
            m.fit(obs)

    def set_lr(self, lr: float) -> None:
        for opt in (self.actor_opt, self.critic_opt, self.alpha_opt):
            for g in opt.param_groups:
                g["lr"] = lr

    # -- learning ----------------------------------------------------------------------------------------------
    def update(self, batch, step: int | None = None) -> dict[str, float]:
        """One gradient step on a replay.Batch: critics, actor and temperature, then the target critics.

        `step` (env steps) drives the learning-rate schedule where the request has lr_final (linear_lr).
        Returns {"critic_loss", "actor_loss", "alpha"} (alpha: the temperature both losses used).
        """
        if step is not None and self.cfg.lr_final is not None:
            self.set_lr(linear_lr(self.cfg, step))
        obs = self.embed(batch.obs)  # the pooler (if any) gets gradients from the critic loss only
        with torch.no_grad():
            next_obs = self.embed(batch.next_obs)
        # the policy's action on the batch is drawn before the critic target's next action: the noise stream's order
        # of every checkpoint so far, so resumed runs repeat their numbers (tests/test_sac.py checks the order); the
        # actor loss reuses this sample, with gradients
        policy = self.actor.sample(obs.detach())
        alpha = self.log_alpha.detach().exp()  # this step's temperature, in both losses
        metrics = self.update_critic(batch, obs, next_obs, alpha)
        metrics |= self.update_actor_and_alpha(obs.detach(), policy, alpha)
        self.update_target_critic()
        self.updates += 1
        return metrics

    def update_critic(self, batch, obs: torch.Tensor, next_obs: torch.Tensor, alpha: torch.Tensor) -> dict:
        """Critics (and the pooler) towards the soft n-step target
        y = R_n + gamma^k (1 - done) (min(Q1', Q2')(s', a') - alpha log pi(a'|s')), a' ~ pi(s')."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            q1_next, q2_next = self.critic_target(next_obs, next_action)
            soft_v_next = torch.min(q1_next, q2_next) - alpha * next_log_prob
            y = batch.rewards + (1 - batch.dones) * batch.discounts * soft_v_next
        q1, q2 = self.critic(obs, batch.actions)
        critic_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        return {"critic_loss": critic_loss.item()}

    def update_actor_and_alpha(
        self, obs: torch.Tensor, policy: tuple[torch.Tensor, torch.Tensor], alpha: torch.Tensor
    ) -> dict:
        """Actor: maximise min(Q1, Q2)(s, a~pi) + alpha * entropy (gradients reach the actor only); temperature:
        raise alpha while the policy's entropy (-log_prob) is below the target, lower it above.
        `policy`: (action, log_prob) sampled on `obs` with gradients."""
        action_pi, log_prob = policy
        self.critic.requires_grad_(False)
        q1_pi, q2_pi = self.critic(obs, action_pi)
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        self.critic.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": actor_loss.item(), "alpha": alpha.item()}

    def update_target_critic(self) -> None:
        """Polyak averaging: target <- (1 - tau) target + tau critic."""
        with torch.no_grad():
            for p, p_targ in zip(self.critic.parameters(), self.critic_target.parameters()):
                p_targ.lerp_(p, self.tau)

    # -- snapshots (sac_checkpoint.py writes them: tensors to policy.safetensors, optim to optim.pt) -------------
    def state_dict(self) -> dict:
        """{"tensors": every network tensor by checkpoint name, "optim": the optimisers' states, "updates": n}.
        References to the live tensors, as torch's state_dict(): write them out (sac_checkpoint.save) or deepcopy
        them before training on."""
        return {"tensors": self.tensors(), "optim": self.optim_state(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict() (or a checkpoint's tensors and optim, with its n_updates as "updates")."""
        tensors, optim = state["tensors"], state["optim"]
        for name in ("actor", "critic", "critic_target") + (("pooler",) if self.pooler is not None else ()):
            getattr(self, name).load_state_dict(
                {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
            )
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        self.actor_opt.load_state_dict(optim["actor"])
        self.critic_opt.load_state_dict(optim["critic"])
        self.alpha_opt.load_state_dict(optim["alpha"])
        self.updates = int(state["updates"])

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {f"actor.{k}": v for k, v in self.actor.state_dict().items()}
        t |= {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        t |= {f"critic_target.{k}": v for k, v in self.critic_target.state_dict().items()}
        if self.pooler is not None:
            t |= {f"pooler.{k}": v for k, v in self.pooler.state_dict().items()}
        return t | {"log_alpha": self.log_alpha.detach()}

    def optim_state(self) -> dict:
        return {
            "actor": self.actor_opt.state_dict(),
            "critic": self.critic_opt.state_dict(),
            "alpha": self.alpha_opt.state_dict(),
        }
