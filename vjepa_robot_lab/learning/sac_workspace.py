"""The SAC training run as a Workspace (DrQ-v2's train.py): seeding, envs, replay, the step loop, evaluation,
the run record's progress, live curves, checkpoint save and resume. The agent itself is sac_agent.py.

    metrics = train_sac(cfg, run, features)                 # blocks; checkpoints into run.dir
    metrics = train_sac(cfg, run, features, resume=True)    # continues from the last checkpoint

    with ExitStack() as closing:                            # what train_sac does
        metrics = SACWorkspace(cfg, run, features, closing, resume=resume, nets=nets).train()

Counting: `total_steps`, `episode_steps`, `eval_every`, `checkpoint_every`, `learning_starts` and every
`env_steps` in the run record are *simulator* steps; with action_repeat=4 one agent transition is 4 env steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_lab.envs.tasks import action_repeat, task_spec
from vjepa_robot_lab.envs.vec_env import ReacherVecEnv, agent_steps
from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate
from vjepa_robot_lab.learning import sac_checkpoint
from vjepa_robot_lab.learning.curves import MeanOf, open_curves
from vjepa_robot_lab.learning.replay import Replay
from vjepa_robot_lab.learning.sac_agent import SAC, Nets, network_config, network_name
from vjepa_robot_lab.perception.readouts import get_readout, network_entry, saved_network
from vjepa_robot_lab.threads import seeded_torch

CHECKPOINT_FORMAT = 2  # 1: stable-baselines3 policy tensors (still loadable for evaluation); 2: sac_agent.SAC


class RunLike(Protocol):
    """What train_sac needs from vjepa_robot_lab.records.runs.RunHandle."""

    run_id: str
    dir: Path

    def update(self, status=None, metrics: dict | None = None, error=None) -> Any: ...
    def stop_requested(self) -> bool: ...


# ----------------------------------------------------------------------------------------------------------------
# "Every N env steps" schedules, the run's counters, the one evaluation
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
    if cfg.action_repeat is None:  # a direct caller that left it out: its task's, as the job layer fills it
        cfg = cfg.model_copy(update={"action_repeat": action_repeat(cfg.task)})
    with ExitStack() as closing:  # closes what the workspace opens, in reverse order, on success or error
        return SACWorkspace(cfg, run, features, closing, resume=resume, nets=nets).train()


# ----------------------------------------------------------------------------------------------------------------
# The workspace
# ----------------------------------------------------------------------------------------------------------------


class SACWorkspace:
    """One SAC run: built (and, on resume, restored) by __init__, trained by train(). What it opens (the training
    envs, the curve writers) is entered into `closing`, which the caller closes however the run ends.

    The order of construction is the run's random-number order: the numpy stream seeded [seed, resumes] draws
    the warm-up actions and the replay batches; the torch stream seeded seed + resumes * 7919 builds the networks
    and then draws the actor's noise.
    """

    def __init__(
        self,
        cfg: TrainSACRequest,
        run: RunLike,
        features,
        closing: ExitStack,
        *,
        resume: bool = False,
        nets: Nets | None = None,
    ):
        self.cfg, self.run, self.resume = cfg, run, resume
        self._check_features(features)
        run.dir.mkdir(parents=True, exist_ok=True)
        # readout (readouts.py): flare observes (N, 3D) fusions; attentive observes flat grids through a grid stream
        # and pools them in the agent (sac_agent.SAC's docstring: shared pooler, trained by the critic loss)
        readout = get_readout(cfg.readout)
        self.features = features = readout.wrap(features, cfg.grid_size)
        self.pooler = readout.network_config(features)  # a learned readout's network shape, or None
        self.networks_name, self.nets = self._networks(nets)
        self.prog, self.prior = Progress(), None
        if resume:
            self._read_checkpoint()
        self.rng = np.random.default_rng([cfg.seed, self.prog.resumed])

        self.N, self.repeat = N, repeat = cfg.parallel_envs, cfg.action_repeat
        self.venv = closing.enter_context(
            ReacherVecEnv(
                features,
                num_envs=N,
                task=cfg.task.value,
                episode_steps=self._train_episode_steps(),  # evaluation: always episode_steps
                action_repeat=repeat,
                seed=cfg.seed,
                image_size=cfg.image_size,
                first_episode=self.prog.episodes_started,
            )
        )
        # live curves; a resumed run drops the points logged after its checkpoint (TensorBoard purges steps >=
        # purge_step)
        self.curves = closing.enter_context(
            open_curves(
                run.dir,
                run_id=run.run_id,
                kind="sac",
                config=cfg.model_dump(mode="json"),
                purge_step=self.env_steps + 1 if resume else None,
            )
        )
        # update metrics are averaged between points: ~50 points a run, one per 1,000 env steps at most
        self.update_means = MeanOf()
        self.log_due = Every(max(N * repeat, min(1000, cfg.total_steps // 50)), self.env_steps)
        # networks built from the seeded global stream, alone; the actor's noise continues that stream privately, so
        # a job beside this one (another SAC, a BC init) never shifts its numbers (vjepa_robot_lab/threads.py)
        if self.prior is not None and saved_network(self.prior.state) is not None:
            self.pooler = saved_network(self.prior.state)
        with seeded_torch(cfg.seed + self.prog.resumed * 7919) as generator:
            self.agent = SAC(int(features.dim), cfg, self.nets, self.pooler)
        self.agent.actor.generator = generator
        self.replay = Replay(
            cfg.buffer_size, N, int(features.dim), self.agent.action_dim, n_step=cfg.n_step, gamma=cfg.gamma
        )
        # Random actions until learning_starts env steps (over all envs); counted again after a resume that lost
        # its replay buffer, so the critic never trains on an almost empty buffer.
        self.warmup_until = -(-cfg.learning_starts // repeat)  # agent transitions
        if self.prior is not None:
            self._restore_agent_and_replay()
        self.grad_steps = cfg.gradient_steps if cfg.gradient_steps != -1 else cfg.updates_per_transition * N
        # Whole vector steps, never past total_steps: e.g. 100,000 env steps with 16 envs x repeat 4 -> 99,968.
        self.total = max(N, cfg.total_steps // repeat // N * N)

        self.t0 = time.perf_counter() - self.prog.wall_s
        self.eval_due = Every(cfg.eval_every, self.env_steps)
        self.ckpt_due = Every(cfg.checkpoint_every, self.env_steps)
        self.report_due = EverySeconds(2.0)
        self.rate_mark = (time.perf_counter(), self.env_steps, self.agent.updates)
        self.log_mark = (time.perf_counter(), self.env_steps)  # env steps/s between two logged points
        self.rates: dict = {"env_steps_per_s": None, "updates_per_s": None}

    # -- setup -------------------------------------------------------------------------------------------------
    def _check_features(self, features) -> None:
        agent_steps(self.cfg.episode_steps, self.cfg.action_repeat)  # validate before building anything
        fspec = getattr(features, "spec", None)  # state features are sized by a task: it must be the run's domain
        if fspec is not None and fspec.domain != task_spec(self.cfg.task).domain:
            raise ValueError(
                f"the {features.name} features were made for task {fspec.name} ({fspec.domain}); this run's task is "
                f"{self.cfg.task.value}: make_feature_source({features.name!r}, task={self.cfg.task.value!r})"
            )

    def _networks(self, nets: Nets | None) -> tuple[str, Nets]:
        """The configuration's name for the run record ("custom": Nets given directly, as bench/sac_sweep.py's
        nets.*) and the Nets, with the input scaling decided for these features."""
        cfg = self.cfg
        name = "custom" if nets is not None else network_name(cfg.networks, cfg.features)
        nets = nets or network_config(cfg.networks, cfg.features)
        if nets.normalize_obs is None:
            nets = replace(nets, normalize_obs=self.features.name == "state")
        if self.pooler is not None:  # the pooled vector moves while the pooler learns: a frozen scaling would be stale
            nets = replace(nets, normalize_obs=False)
        return name, nets

    def _train_episode_steps(self) -> int:
        cfg = self.cfg
        if self.prior is not None and "train_episode_steps" not in self.prior.state["config"]:
            return cfg.episode_steps  # a run from before train_episode_steps resumes with the episodes it had
        return cfg.train_episode_steps or cfg.episode_steps

    # -- checkpoints -------------------------------------------------------------------------------------------
    def _read_checkpoint(self) -> None:
        """Resume, first half (before anything is seeded): the networks and counters of run.dir's checkpoint."""
        self.prior = prior = sac_checkpoint.load(self.run.dir)
        if int(prior.state["dim"]) != int(self.features.dim):
            raise ValueError(f"checkpoint has {prior.state['dim']}-d features, the source gives {self.features.dim}-d")
        self.nets = Nets(**{k: tuple(v) if isinstance(v, list) else v for k, v in prior.state["nets"].items()})
        s = prior.state
        self.prog = Progress(
            s["num_timesteps"],
            s["episodes_started"],
            s["wall_s"],
            s["curve"],
            s.get("episodes_reported", 0),
            s.get("resumed", 0) + 1,
        )

    def _restore_agent_and_replay(self) -> None:
        """Resume, second half: weights, optimizers and update count; the replay buffer if it was saved, else
        warm-up again from here."""
        prior = self.prior
        self.agent.load_state_dict(
            {"tensors": prior.tensors, "optim": prior.optim, "updates": prior.state["n_updates"]}
        )
        if prior.state["replay"]["saved"]:
            self.replay.load_npy(prior.path, prior.state["replay"]["pos"], prior.state["replay"]["full"])
        else:
            self.warmup_until += self.prog.transitions

    def save_checkpoint(self) -> None:
        """run.dir/sac (sac_checkpoint.py): the agent's snapshot, the counters, the config, the replay buffer."""
        cfg, prog, snapshot = self.cfg, self.prog, self.agent.state_dict()
        prog.episodes_started, prog.wall_s = self.venv.episodes_started, time.perf_counter() - self.t0
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": cfg.model_dump(mode="json"),
            "nets": asdict(self.nets),
            "dim": int(self.features.dim),
            "features": self.features.name,
            "num_timesteps": prog.transitions,
            "n_updates": snapshot["updates"],
            **{k: v for k, v in asdict(prog).items() if k != "transitions"},
            "readout": cfg.readout.value,
            "pooler": None,  # kept in every state (SAC's format); a learned readout's config under its config_key
        }
        if self.pooler is not None:
            key, net_state = network_entry(self.pooler)
            state[key] = net_state
        if hasattr(self.features, "lineage"):
            state["lineage"] = self.features.lineage()
        replay = self.replay if cfg.checkpoint_replay else None
        sac_checkpoint.save(self.run.dir, snapshot["tensors"], snapshot["optim"], state, replay)

    # -- the step loop -----------------------------------------------------------------------------------------
    @property
    def env_steps(self) -> int:
        return self.prog.transitions * self.repeat

    def train(self) -> dict:
        """Run to cfg.total_steps (or a stop request); returns the final metrics (see train_sac)."""
        self.run.update(
            metrics={
                "env_steps": self.env_steps,
                "total_steps": self.cfg.total_steps,
                "action_repeat": self.repeat,
                "episode_steps": self.cfg.episode_steps,
                "resumed": bool(self.resume),
            }
        )
        stopped = False
        obs = self.venv.reset() if self.prog.transitions < self.total else None  # (N, D)
        while self.prog.transitions < self.total:
            obs = self.collect(obs)
            self.learn()
            self.on_schedules()
            if self.run.stop_requested():
                stopped = True
                break
        return self.finish(stopped)

    def collect(self, obs: np.ndarray) -> np.ndarray:
        """One vector step: uniform random actions during warm-up, then the stochastic policy; the transitions go
        in the replay buffer, the training episodes that ended here become one curve point. Returns the next obs."""
        if self.prog.transitions < self.warmup_until:
            actions = self.rng.uniform(-1, 1, size=(self.N, self.agent.action_dim)).astype(np.float32)
        else:
            actions = self.agent.act(obs)
        next_obs, rewards, dones, infos = self.venv.step(actions)
        real_next = next_obs.copy()  # where an episode ended: its terminal observation, not the next reset
        for i in np.flatnonzero(dones):
            real_next[i] = infos[i]["terminal_observation"]
        # reacher episodes end only by time limit: every end is a truncation, and the critic bootstraps through it
        self.replay.add(obs, real_next, actions, rewards, dones, truncated=dones)
        self.prog.transitions += self.N
        if dones.any():
            ended = self.venv.completed[-int(dones.sum()) :]
            point = {"train/episode_return": float(np.mean([e["return"] for e in ended]))}
            if ended[0]["success"] is not None:  # only reacher defines success (tasks.py)
                point["train/episode_success"] = float(np.mean([e["success"] for e in ended]))
            self.curves.log(point, self.env_steps)
        return next_obs

    def learn(self) -> None:
        """`grad_steps` updates per vector step once warm-up is over (the input scaling fitted before the first)."""
        if self.prog.transitions < self.warmup_until or self.replay.size() < 1:
            return
        agent, replay = self.agent, self.replay
        if self.nets.normalize_obs and not agent.actor.scale.fitted:
            filled = replay.observations[: replay.slots if replay.full else replay.pos]
            agent.fit_obs_scale(filled.reshape(-1, replay.dim).astype(np.float32))
        for _ in range(self.grad_steps):
            self.update_means.add(agent.update(replay.sample(self.cfg.batch_size, self.rng), self.env_steps))

    def on_schedules(self) -> None:
        """Update-metric curve point, evaluation curve point, checkpoint, progress report: each when it is due."""
        if self.log_due(self.env_steps):
            self.log_updates()
        if self.eval_due(self.env_steps):
            ev = self.evaluate(self.cfg.eval_episodes)
            self.prog.curve.append(self.curve_point(ev, self.cfg.eval_episodes))
            self.report_due.last = 0.0  # report the new point now
        if self.ckpt_due(self.env_steps):
            self.save_checkpoint()
        if self.report_due():
            self.report_progress()

    def finish(self, stopped: bool) -> dict:
        """The last checkpoint, then (unless stopped) the final evaluation, saved into state.json too."""
        cfg, prog = self.cfg, self.prog
        self.save_checkpoint()
        if self.update_means.n:
            self.log_updates()
        out = self.metrics()
        if stopped:
            out["stopped"] = True
        else:
            targets = cfg.final_eval_targets.value
            ev = self.evaluate(cfg.final_eval_episodes, targets)
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
            if not prog.curve or prog.curve[-1]["env_steps"] != self.env_steps:  # the curve ends at the final step
                prog.curve.append(self.curve_point(ev, cfg.final_eval_episodes) | {"train_return": None})
            out["curve"] = list(prog.curve)
            sac_checkpoint.update_state(self.run.dir, final_eval=out["final_eval"], curve=list(prog.curve))
        out["replay_bytes"] = self.replay.nbytes
        self.run.update(metrics=out)
        return out

    # -- evaluation, curves and the run record's progress --------------------------------------------------------
    def evaluate(self, episodes: int, targets: str = "uniform") -> dict:
        """The deterministic policy (tanh of the actor's mean) on fresh evaluation episodes (evaluate_actor)."""
        return evaluate_actor(partial(self.agent.act, sample=False), self.features, self.cfg, episodes, targets)

    def curve_point(self, ev: dict, episodes: int) -> dict:
        """A learning-curve point of the run record (and its TensorBoard scalars) from an evaluation."""
        recent = self.venv.completed[self.prog.episodes_reported :]
        self.prog.episodes_reported = len(self.venv.completed)
        point = {"eval/mean_return": ev["mean_return"], "eval/success_rate": ev["success_rate"]}
        self.curves.log(point, self.env_steps)
        return {
            "env_steps": self.env_steps,
            "mean_return": round(ev["mean_return"], 2),
            "std_return": round(ev["std_return"], 2),
            "success_rate": ev["success_rate"],
            "eval_episodes": episodes,
            "wall_s": round(time.perf_counter() - self.t0, 2),
            "train_return": round(float(np.mean([r["return"] for r in recent])), 2) if recent else None,
        }

    def log_updates(self) -> None:
        """Means of the agent's update metrics since the last point, and env steps/s over the same span."""
        now, (t, s) = time.perf_counter(), self.log_mark
        m = self.update_means.pop()
        steps = self.env_steps
        self.curves.log(
            {
                "loss/critic": m.get("critic_loss"),
                "loss/actor": m.get("actor_loss"),
                "train/alpha": m.get("alpha"),
                "perf/env_steps_per_s": (steps - s) / (now - t) if now > t and steps > s else None,
            },
            steps,
        )
        self.log_mark = (now, steps)

    def report_progress(self) -> None:
        """The run record's live metrics, with env steps/s and updates/s since the last report over a second ago."""
        now = time.perf_counter()
        t, s, u = self.rate_mark
        if now - t > 1.0:
            self.rates = {
                "env_steps_per_s": round((self.env_steps - s) / (now - t), 1),
                "updates_per_s": round((self.agent.updates - u) / (now - t), 1),
            }
            self.rate_mark = (now, self.env_steps, self.agent.updates)
        self.run.update(metrics=self.metrics())

    def metrics(self) -> dict:
        return {
            "env_steps": self.env_steps,
            "total_steps": self.cfg.total_steps,
            "agent_steps": self.prog.transitions,
            "updates": self.agent.updates,
            "action_repeat": self.repeat,
            "episode_steps": self.cfg.episode_steps,
            "parallel_envs": self.N,
            "features": self.features.name,
            "networks": self.networks_name,
            "dim": int(self.features.dim),
            "wall_s": round(time.perf_counter() - self.t0, 2),
            "train_episodes": len(self.venv.completed),
            "curve": list(self.prog.curve),
            **self.rates,
        }
