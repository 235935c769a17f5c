"""Soft Actor-Critic on frozen features, written out to be read top to bottom (CleanRL's layout).

    features = make_feature_source("state")                    # or "vjepa2" (encoder over HTTP) / "random"
    metrics = train_sac(TrainSACRequest(), run, features)      # blocks; checkpoints into run.dir
    metrics = train_sac(cfg, run, features, resume=True)       # continues from the last checkpoint
    act = policy_from_checkpoint(run.dir)                      # (B, D) float32 -> (B, 2) deterministic actions

File order: networks, the agent's update (one gradient step), "every N steps" schedules, the training loop,
loading a trained policy. The replay buffer is replay.py; checkpoint files are sac_checkpoint.py.

Algorithm (Haarnoja et al. 2018, "SAC: algorithms and applications", with automatic entropy tuning):
twin Q critics and their Polyak-averaged targets, a tanh-squashed Gaussian actor, a learned temperature alpha
driven towards the target entropy -dim(A) = -2, n-step returns in the critic target (DrQ-v2), and
`updates_per_transition` gradient steps per agent transition. Networks: the findings' [256, 64] hidden
layers for actor and critics; on `state` features the inputs are scaled by the warm-up observations' mean and
std (`Nets.normalize_obs`), which took the failing seeds of the state oracle over 900 (bench/SAC_RESULTS.md).

Counting: `total_steps`, `episode_steps`, `eval_every`, `checkpoint_every`, `learning_starts` and every
`env_steps` in the run record are *simulator* steps; with action_repeat=4 one agent transition is 4 env steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_client.contract import sac_default_networks as default_networks
from vjepa_robot_lab.envs.tasks import task_spec
from vjepa_robot_lab.envs.vec_env import ACTION_DIM, ReacherVecEnv, agent_steps
from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate
from vjepa_robot_lab.learning import sac_checkpoint
from vjepa_robot_lab.learning.curves import MeanOf, open_curves
from vjepa_robot_lab.learning.replay import Replay
from vjepa_robot_lab.perception.readouts import AttentivePooler, GridFeatures, PoolerConfig, with_readout
from vjepa_robot_lab.policies.loaded import LoadedPolicy
from vjepa_robot_lab.threads import seeded_torch

NET_ARCH = (256, 64)  # the findings' actor and critic hidden sizes (Phase 2)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # clamp of the actor's log standard deviation (as stable-baselines3)
CHECKPOINT_FORMAT = 2  # 1: stable-baselines3 policy tensors (still loadable for evaluation); 2: this module
checkpoint_path = sac_checkpoint.path  # the latest complete checkpoint of a run directory (or None)


class RunLike(Protocol):
    """What train_sac needs from vjepa_robot_lab.records.runs.RunHandle."""

    run_id: str
    dir: Path

    def update(self, status=None, metrics: dict | None = None, error=None) -> Any: ...
    def stop_requested(self) -> bool: ...


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
# The agent: networks, optimizers and one gradient step
# ----------------------------------------------------------------------------------------------------------------


class SAC:
    """Twin critics, actor, temperature; with `pooler` (readout attentive) one AttentivePooler reads the token grids
    for both.

    The pooler is shared by actor and critics and trained by the critic loss only, as DrQ-v2 trains its image
    encoder (drqv2.py: the encoder's optimiser steps with the critic's, the actor gets `obs.detach()`): the actor's
    gradient through a shared encoder fights the critic's and destabilises it (DrQ-v2, section 3; SAC-AE, Yarats et
    al. 2019, found the same for a pixel autoencoder). The next observations are pooled by the same pooler under
    no_grad (DrQ-v2 keeps no target encoder either). Flat (B, G*D) grids go in the replay buffer.
    """

    def __init__(self, dim: int, cfg: TrainSACRequest, nets: Nets, pooler: PoolerConfig | None = None):
        self.gamma, self.tau = cfg.gamma, cfg.tau
        self.pooler = AttentivePooler(pooler) if pooler is not None else None
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
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """(B, D) float32 -> (B, 2) actions in [-1, 1]: sampled while training, tanh(mean) when evaluating."""
        x = self.embed(torch.as_tensor(np.asarray(obs, np.float32)))
        return (self.actor.deterministic(x) if deterministic else self.actor.sample(x)[0]).numpy()

    def fit_obs_scale(self, obs: np.ndarray) -> None:
        for m in (self.actor.scale, self.critic.scale, self.critic_target.scale):
            m.fit(obs)

    def update(self, b) -> dict[str, float]:
        """One gradient step on a replay.Batch: temperature, critics, actor, then the target critics."""
        obs = self.embed(b.obs)  # the pooler (if any) gets gradients from the critic loss only
        with torch.no_grad():
            next_obs = self.embed(b.next_obs)
        # the actor's action and log-probability on the batch (reused, with gradients, by the actor loss)
        action_pi, log_prob = self.actor.sample(obs.detach())

        # temperature: raise alpha while the policy's entropy (-log_prob) is below the target, lower it above
        alpha = self.log_alpha.detach().exp()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()

        # critics: soft n-step target y = R_n + gamma^k (1 - done) (min(Q1', Q2')(s', a') - alpha log pi(a'|s'))
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            q1_next, q2_next = self.critic_target(next_obs, next_action)
            soft_v_next = torch.min(q1_next, q2_next) - alpha * next_log_prob
            y = b.rewards + (1 - b.dones) * b.discounts * soft_v_next
        q1, q2 = self.critic(obs, b.actions)
        critic_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        # actor: maximise min(Q1, Q2)(s, a~pi) + alpha * entropy (gradients reach the actor only)
        self.critic.requires_grad_(False)
        q1_pi, q2_pi = self.critic(obs.detach(), action_pi)
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        self.critic.requires_grad_(True)

        # target critics: Polyak averaging
        with torch.no_grad():
            for p, p_targ in zip(self.critic.parameters(), self.critic_target.parameters()):
                p_targ.lerp_(p, self.tau)
        self.updates += 1
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item()}

    def set_lr(self, lr: float) -> None:
        for opt in (self.actor_opt, self.critic_opt, self.alpha_opt):
            for g in opt.param_groups:
                g["lr"] = lr

    # -- checkpoint contents ----------------------------------------------------------------------------------
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

    def load(self, tensors: dict[str, torch.Tensor], optim: dict) -> None:
        for name in ("actor", "critic", "critic_target") + (("pooler",) if self.pooler is not None else ()):
            getattr(self, name).load_state_dict(
                {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
            )
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        self.actor_opt.load_state_dict(optim["actor"])
        self.critic_opt.load_state_dict(optim["critic"])
        self.alpha_opt.load_state_dict(optim["alpha"])


# ----------------------------------------------------------------------------------------------------------------
# "Every N env steps" schedules
# ----------------------------------------------------------------------------------------------------------------


class Every:
    """True once each time env steps cross a multiple of `every` (the counter may jump past several)."""

    def __init__(self, every: int, start: int = 0):
        self.every = int(every)
        self.next = (start // self.every + 1) * self.every

    def __call__(self, env_steps: int) -> bool:
        if env_steps < self.next:
            return False
        self.next = (env_steps // self.every + 1) * self.every
        return True


class EverySeconds:
    """True at most once per `seconds` of wall time (run-record progress updates)."""

    def __init__(self, seconds: float):
        self.seconds, self.last = float(seconds), 0.0

    def __call__(self) -> bool:
        now = time.perf_counter()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


# ----------------------------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Counters of a run; what state.json keeps besides the config."""

    transitions: int = 0  # agent transitions over all envs (state.json: num_timesteps)
    episodes_started: int = 0
    wall_s: float = 0.0
    curve: list[dict] = field(default_factory=list)
    episodes_reported: int = 0
    resumed: int = 0


def evaluate_actor(
    act: Callable[[np.ndarray], np.ndarray], features, cfg: TrainSACRequest, episodes: int, targets: str = "uniform"
) -> dict:
    """Deterministic evaluation on `episodes` fresh evaluation episodes, all at once (the one evaluation loop);
    targets "stratified" for the final one where cfg.final_eval_targets asks (evaluate.stratified_targets)."""
    ev = evaluate(
        FeaturePolicy(act, features),
        task=cfg.task.value,
        episodes=episodes,
        steps=cfg.episode_steps,
        seed=cfg.eval_seed,
        parallel_envs=episodes,
        image_size=cfg.image_size,
        action_repeat=cfg.action_repeat,
        targets=targets,
    )
    returns = [e["return"] for e in ev["episodes"]]
    return {
        "mean_return": ev["mean_return"],
        "std_return": float(np.std(returns)),
        "success_rate": ev["success_rate"],
        "episodes": ev["episodes"],
    } | {k: ev[k] for k in ("by_distance", "failed") if k in ev}


def train_sac(cfg: TrainSACRequest, run: RunLike, features, resume: bool = False, nets: Nets | None = None) -> dict:
    """Train SAC on `features` (a vjepa_robot_lab.perception.features.FeatureSource) for cfg.total_steps env steps.

    Blocks; call it in a background thread or process. Checkpoints into run.dir every cfg.checkpoint_every
    env steps and at the end (or on stop). resume=True continues from run.dir's last checkpoint: weights,
    optimizers, counters, curve and (if checkpointed) the replay buffer. Returns the final metrics, which
    include `final_eval` over cfg.final_eval_episodes episodes; a stopped run returns `stopped: True` without
    a final evaluation. The caller owns run status (running/succeeded/failed/interrupted).

    Live curves go to TensorBoard event files in run.dir (and W&B where asked for): vjepa_robot_lab/learning/curves.py.
    The training envs and the curve writers are closed however the run ends (`finally`); the feature source
    belongs to the caller. torch's thread count is the process's (vjepa_robot_lab/threads.py): never set here.
    """
    with ExitStack() as closing:  # closes what _train_sac opens, in reverse order, on success or error
        return _train_sac(cfg, run, features, resume, nets, closing)


def _train_sac(
    cfg: TrainSACRequest, run: RunLike, features, resume: bool, nets: Nets | None, closing: ExitStack
) -> dict:
    agent_steps(cfg.episode_steps, cfg.action_repeat)  # validate before building anything
    fspec = getattr(features, "spec", None)  # state features are sized by a task: it must be the run's domain
    if fspec is not None and fspec.domain != task_spec(cfg.task).domain:
        raise ValueError(
            f"the {features.name} features were made for task {fspec.name} ({fspec.domain}); this run's task is "
            f"{cfg.task.value}: make_feature_source({features.name!r}, task={cfg.task.value!r})"
        )
    run.dir.mkdir(parents=True, exist_ok=True)
    # readout (readouts.py): flare observes (N, 3D) fusions; attentive observes flat grids through a grid stream and
    # pools them in the agent (SAC's docstring: shared pooler, trained by the critic loss)
    features = with_readout(features, cfg.readout, cfg.grid_size)
    pooler = (
        PoolerConfig(dim=features.token_dim, tokens=features.tokens) if isinstance(features, GridFeatures) else None
    )
    # the configuration's name for the run record ("custom": Nets given directly, as bench/sac_sweep.py's nets.*)
    networks_name = "custom" if nets is not None else network_name(cfg.networks, cfg.features)
    nets = nets or network_config(cfg.networks, cfg.features)
    if nets.normalize_obs is None:
        nets = replace(nets, normalize_obs=features.name == "state")
    if pooler is not None:  # the pooled vector moves while the pooler learns: a frozen input scaling would be stale
        nets = replace(nets, normalize_obs=False)
    prog, prior = Progress(), None
    if resume:
        prior = sac_checkpoint.load(run.dir)
        if int(prior.state["dim"]) != int(features.dim):
            raise ValueError(f"checkpoint has {prior.state['dim']}-d features, the source gives {features.dim}-d")
        nets = Nets(**{k: tuple(v) if isinstance(v, list) else v for k, v in prior.state["nets"].items()})
        s = prior.state
        prog = Progress(
            s["num_timesteps"],
            s["episodes_started"],
            s["wall_s"],
            s["curve"],
            s.get("episodes_reported", 0),
            s.get("resumed", 0) + 1,
        )
    rng = np.random.default_rng([cfg.seed, prog.resumed])

    N, repeat = cfg.parallel_envs, cfg.action_repeat
    train_steps = cfg.train_episode_steps or cfg.episode_steps
    if prior is not None and "train_episode_steps" not in prior.state["config"]:
        train_steps = cfg.episode_steps  # a run from before train_episode_steps resumes with the episodes it had
    venv = closing.enter_context(
        ReacherVecEnv(
            features,
            num_envs=N,
            task=cfg.task.value,
            episode_steps=train_steps,  # evaluation: always episode_steps
            action_repeat=repeat,
            seed=cfg.seed,
            image_size=cfg.image_size,
            first_episode=prog.episodes_started,
        )
    )
    # live curves; a resumed run drops the points logged after its checkpoint (TensorBoard purges steps >= purge_step)
    curves = closing.enter_context(
        open_curves(
            run.dir,
            run_id=run.run_id,
            kind="sac",
            config=cfg.model_dump(mode="json"),
            purge_step=prog.transitions * repeat + 1 if resume else None,
        )
    )
    # update metrics are averaged between points: ~50 points a run, one per 1,000 env steps at most
    update_means = MeanOf()
    log_due = Every(max(N * repeat, min(1000, cfg.total_steps // 50)), prog.transitions * repeat)
    # networks built from the seeded global stream, alone; the actor's noise continues that stream privately, so a
    # job beside this one (another SAC, a BC init) never shifts its numbers (vjepa_robot_lab/threads.py)
    if prior is not None and prior.state.get("pooler"):
        pooler = PoolerConfig(**prior.state["pooler"])
    with seeded_torch(cfg.seed + prog.resumed * 7919) as generator:
        agent = SAC(int(features.dim), cfg, nets, pooler)
    agent.actor.generator = generator
    replay = Replay(cfg.buffer_size, N, int(features.dim), agent.action_dim, n_step=cfg.n_step, gamma=cfg.gamma)
    # Random actions until learning_starts env steps (over all envs); counted again after a resume that lost
    # its replay buffer, so the critic never trains on an almost empty buffer.
    warmup_until = -(-cfg.learning_starts // repeat)  # agent transitions
    if prior is not None:
        agent.load(prior.tensors, prior.optim)
        agent.updates = int(prior.state["n_updates"])
        if prior.state["replay"]["saved"]:
            replay.load_npy(prior.path, prior.state["replay"]["pos"], prior.state["replay"]["full"])
        else:
            warmup_until += prog.transitions
    grad_steps = cfg.gradient_steps if cfg.gradient_steps != -1 else cfg.updates_per_transition * N
    # Whole vector steps, never past total_steps: e.g. 100,000 env steps with 16 envs x repeat 4 -> 99,968.
    total = max(N, cfg.total_steps // repeat // N * N)

    t0 = time.perf_counter() - prog.wall_s
    env_steps = lambda: prog.transitions * repeat  # noqa: E731
    eval_due, ckpt_due, report_due = (
        Every(cfg.eval_every, env_steps()),
        Every(cfg.checkpoint_every, env_steps()),
        EverySeconds(2.0),
    )
    rate_mark = (time.perf_counter(), env_steps(), agent.updates)
    log_mark = (time.perf_counter(), env_steps())  # env steps/s between two logged points
    rates: dict = {"env_steps_per_s": None, "updates_per_s": None}
    deterministic = lambda x: agent.act(x, deterministic=True)  # noqa: E731

    def metrics() -> dict:
        return {
            "env_steps": env_steps(),
            "total_steps": cfg.total_steps,
            "agent_steps": prog.transitions,
            "updates": agent.updates,
            "action_repeat": repeat,
            "episode_steps": cfg.episode_steps,
            "parallel_envs": N,
            "features": features.name,
            "networks": networks_name,
            "dim": int(features.dim),
            "wall_s": round(time.perf_counter() - t0, 2),
            "train_episodes": len(venv.completed),
            "curve": list(prog.curve),
            **rates,
        }

    def curve_point(ev: dict, episodes: int) -> dict:
        recent = venv.completed[prog.episodes_reported :]
        prog.episodes_reported = len(venv.completed)
        curves.log({"eval/mean_return": ev["mean_return"], "eval/success_rate": ev["success_rate"]}, env_steps())
        return {
            "env_steps": env_steps(),
            "mean_return": round(ev["mean_return"], 2),
            "std_return": round(ev["std_return"], 2),
            "success_rate": ev["success_rate"],
            "eval_episodes": episodes,
            "wall_s": round(time.perf_counter() - t0, 2),
            "train_return": round(float(np.mean([r["return"] for r in recent])), 2) if recent else None,
        }

    def log_updates(mark: tuple[float, int]) -> tuple[float, int]:
        """Means of the agent's update metrics since the last point, and env steps/s over the same span."""
        now, (t, s) = time.perf_counter(), mark
        m = update_means.pop()
        curves.log(
            {
                "loss/critic": m.get("critic_loss"),
                "loss/actor": m.get("actor_loss"),
                "train/alpha": m.get("alpha"),
                "perf/env_steps_per_s": (env_steps() - s) / (now - t) if now > t and env_steps() > s else None,
            },
            env_steps(),
        )
        return now, env_steps()

    def checkpoint() -> None:
        prog.episodes_started, prog.wall_s = venv.episodes_started, time.perf_counter() - t0
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": cfg.model_dump(mode="json"),
            "nets": asdict(nets),
            "dim": int(features.dim),
            "features": features.name,
            "num_timesteps": prog.transitions,
            "n_updates": agent.updates,
            **{k: v for k, v in asdict(prog).items() if k != "transitions"},
            "readout": cfg.readout.value,
            "pooler": pooler.to_dict() if pooler is not None else None,
        }
        if hasattr(features, "lineage"):
            state["lineage"] = features.lineage()
        sac_checkpoint.save(
            run.dir, agent.tensors(), agent.optim_state(), state, replay if cfg.checkpoint_replay else None
        )

    run.update(
        metrics={
            "env_steps": env_steps(),
            "total_steps": cfg.total_steps,
            "action_repeat": repeat,
            "episode_steps": cfg.episode_steps,
            "resumed": bool(resume),
        }
    )
    stopped = False
    obs = venv.reset() if prog.transitions < total else None  # (N, D)
    while prog.transitions < total:
        # -- act: uniform random actions during warm-up, then the stochastic policy --------------------------
        if prog.transitions < warmup_until:
            actions = rng.uniform(-1, 1, size=(N, agent.action_dim)).astype(np.float32)
        else:
            actions = agent.act(obs)
        next_obs, rewards, dones, infos = venv.step(actions)
        real_next = next_obs.copy()  # where an episode ended: its terminal observation, not the next reset
        for i in np.flatnonzero(dones):
            real_next[i] = infos[i]["terminal_observation"]
        # reacher episodes end only by time limit: every end is a truncation, and the critic bootstraps through it
        replay.add(obs, real_next, actions, rewards, dones, truncated=dones)
        obs = next_obs
        prog.transitions += N
        if dones.any():  # the training episodes that ended at this vector step, as one curve point
            ended = venv.completed[-int(dones.sum()) :]
            point = {"train/episode_return": float(np.mean([e["return"] for e in ended]))}
            if ended[0]["success"] is not None:  # only reacher defines success (tasks.py)
                point["train/episode_success"] = float(np.mean([e["success"] for e in ended]))
            curves.log(point, env_steps())

        # -- learn: `grad_steps` updates per vector step once warm-up is over -------------------------------
        if prog.transitions >= warmup_until and replay.size() >= 1:
            if nets.normalize_obs and not agent.actor.scale.fitted:
                filled = replay.observations[: replay.slots if replay.full else replay.pos]
                agent.fit_obs_scale(filled.reshape(-1, replay.dim).astype(np.float32))
            if cfg.lr_final is not None:
                agent.set_lr(linear_lr(cfg, prog.transitions * repeat))
            for _ in range(grad_steps):
                update_means.add(agent.update(replay.sample(cfg.batch_size, rng)))
        if log_due(env_steps()):
            log_mark = log_updates(log_mark)

        # -- schedules: curve point, checkpoint, progress report, stop request ------------------------------
        if eval_due(env_steps()):
            prog.curve.append(
                curve_point(evaluate_actor(deterministic, features, cfg, cfg.eval_episodes), cfg.eval_episodes)
            )
            report_due.last = 0.0  # report the new point now
        if ckpt_due(env_steps()):
            checkpoint()
        if report_due():
            now = time.perf_counter()
            t, s, u = rate_mark
            if now - t > 1.0:
                rates = {
                    "env_steps_per_s": round((env_steps() - s) / (now - t), 1),
                    "updates_per_s": round((agent.updates - u) / (now - t), 1),
                }
                rate_mark = (now, env_steps(), agent.updates)
            run.update(metrics=metrics())
        if run.stop_requested():
            stopped = True
            break

    checkpoint()
    if update_means.n:
        log_updates(log_mark)
    out = metrics()
    if stopped:
        out["stopped"] = True
    else:
        targets = cfg.final_eval_targets.value
        ev = evaluate_actor(deterministic, features, cfg, cfg.final_eval_episodes, targets)
        out["final_eval"] = {k: ev[k] for k in ("mean_return", "std_return", "success_rate")} | {
            "episodes": cfg.final_eval_episodes,
            "episode_steps": cfg.episode_steps,
            "returns": [round(e["return"], 1) for e in ev["episodes"]],
            "targets": targets,
        }
        if "by_distance" in ev:  # reacher: where the targets were, and which the policy missed
            out["final_eval"] |= {
                "target_radius": [e.get("target_radius") for e in ev["episodes"]],
                "target_angle": [e.get("target_angle") for e in ev["episodes"]],
                "by_distance": ev["by_distance"],
                "failed": ev["failed"],
            }
        if not prog.curve or prog.curve[-1]["env_steps"] != env_steps():  # the curve ends at the final step
            prog.curve.append(curve_point(ev, cfg.final_eval_episodes) | {"train_return": None})
        out["curve"] = list(prog.curve)
        sac_checkpoint.update_state(run.dir, final_eval=out["final_eval"], curve=list(prog.curve))
    out["replay_bytes"] = replay.nbytes
    run.update(metrics=out)
    return out


# ----------------------------------------------------------------------------------------------------------------
# A trained policy
# ----------------------------------------------------------------------------------------------------------------


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
    if ck.state.get("pooler"):  # readout attentive: the shared pooler reads the grid before the actor
        pooler = AttentivePooler(PoolerConfig(**ck.state["pooler"]))
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
        readout=cfg.get("readout", "mean"),
        grid_size=int(cfg.get("grid_size") or 4),
        features=cfg["features"],
        task=cfg.get("task", "easy"),
        action_repeat=int(cfg["action_repeat"]),
        episode_steps=int(cfg["episode_steps"]),
    )
