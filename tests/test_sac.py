"""SAC unit tests: tiny-budget runs on state features, resume, stop, the update, replay buffer accounting."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_lab.envs.vec_env import ReacherVecEnv
from vjepa_robot_lab.learning.replay import Replay, replay_bytes
from vjepa_robot_lab.learning.sac import SAC, Every, Nets, network_config, policy_from_checkpoint, train_sac
from vjepa_robot_lab.perception.features import make_feature_source

torch.set_num_threads(1)

TINY = dict(
    features="state",
    total_steps=800,
    parallel_envs=2,
    episode_steps=100,
    action_repeat=4,
    learning_starts=200,
    batch_size=32,
    buffer_size=2000,
    eval_every=400,
    checkpoint_every=400,
    eval_episodes=1,
    final_eval_episodes=2,
)


class FakeRun:
    """RunHandle's surface: run_id, dir, update(), stop_requested() (here: after `stop_after` polls)."""

    def __init__(self, d: Path, stop_after: int | None = None):
        self.run_id, self.dir, self.metrics, self.stop_after, self.polls = "sac-test", d, {}, stop_after, 0

    def update(self, status=None, metrics=None, error=None):
        self.metrics.update(metrics or {})

    def stop_requested(self) -> bool:
        self.polls += 1
        return self.stop_after is not None and self.polls > self.stop_after


def test_tiny_run_end_to_end(tmp_path):
    run = FakeRun(tmp_path)
    out = train_sac(TrainSACRequest(**TINY), run, make_feature_source("state"))
    assert out["env_steps"] == 800 and out["agent_steps"] == 200  # simulator steps, action repeat counted
    assert out["updates"] > 0 and "final_eval" in out
    assert [p["env_steps"] for p in out["curve"]] == [400, 800]
    assert {"mean_return", "success_rate", "wall_s"} <= set(out["curve"][0])
    assert 0 <= out["final_eval"]["mean_return"] <= 100  # 100-step episodes: at most 100
    assert run.metrics["curve"] == out["curve"]
    ck = tmp_path / "sac"
    assert (ck / "policy.safetensors").exists() and (ck / "state.json").exists()
    torch.load(ck / "optim.pt", weights_only=True)  # no pickle needed
    act = policy_from_checkpoint(tmp_path)
    a = act(np.zeros((3, 8), np.float32))
    assert a.shape == (3, 2) and np.all(np.abs(a) <= 1) and act.dim == 8
    from vjepa_robot_lab.policies.loaded import LoadedPolicy

    assert isinstance(act, LoadedPolicy) and act.readout == "mean" and act.features == "state"  # typed, not attrs
    from safetensors.torch import load_file

    t = load_file(str(ck / "policy.safetensors"))  # state features: inputs scaled by the warm-up statistics
    assert float(t["actor.scale.fitted"]) == 1 and float(t["critic_target.scale.fitted"]) == 1
    assert t["actor.scale.std"][4:6].max() < 0.5 < t["actor.scale.std"][6:].min()  # to_target ~0.1, velocity >1
    nets = json.loads((ck / "state.json").read_text())["nets"]
    assert nets["normalize_obs"] is True and nets["critic"] == [256, 64] and nets["actor"] == [256, 64]
    # state's default networks are `ln` (issue 22): each hidden Linear of the twin critics is followed by a LayerNorm
    assert nets["critic_kind"] == "ln" and run.metrics["networks"] == "ln"
    assert t["critic.q.3.weight"].shape == (2, 256, 64) and t["critic.q.4.weight"].shape == (2, 1, 64)


def test_state_defaults_are_filled_into_the_request():
    """issue 22's winner: ln critics on state features, 200-step training episodes on reacher; the request (and so
    the run record) names them; vjepa2/random keep the findings' nets and training episodes of episode_steps."""
    r = TrainSACRequest()
    assert r.networks.value == "ln" and r.train_episode_steps == 200 and r.episode_steps == 1000
    assert TrainSACRequest(task="reacher-hard").train_episode_steps == 200
    v = TrainSACRequest(features="vjepa2")
    assert v.networks.value == "findings" and v.train_episode_steps is None
    w = TrainSACRequest(task="walker-walk", action_repeat=2)
    assert w.train_episode_steps is None  # short episodes are reacher's only
    assert w.networks.value == "ln" and w.updates_per_transition == 2
    # ln-raw (issue 30): ln without the warm-up input scaling, by name
    raw = TrainSACRequest(task="finger-spin", networks="ln-raw")
    assert raw.networks.value == "ln-raw" and network_config(raw.networks, "state").normalize_obs is False
    assert TrainSACRequest(train_episode_steps=1000, networks="findings").model_dump()["train_episode_steps"] == 1000
    assert TrainSACRequest(episode_steps=100).train_episode_steps == 100  # never longer than evaluation's
    assert TrainSACRequest(episode_steps=1200, action_repeat=16).train_episode_steps == 192  # whole agent steps


def test_default_networks_per_feature_source(tmp_path):
    from vjepa_robot_lab.learning.sac import NETWORKS, default_networks

    assert default_networks("state") == "ln" and network_config(None, "state") == NETWORKS["ln"]
    assert default_networks("vjepa2") == default_networks("random") == "findings"  # the seed's Phase 2 plan
    assert network_config(None) == NETWORKS["findings"] and network_config("bro", "state") == NETWORKS["bro"]
    run = FakeRun(tmp_path)  # naming one overrides the features' default, and the run record says which
    train_sac(TrainSACRequest(**TINY | {"total_steps": 400}, networks="findings"), run, make_feature_source("state"))
    nets = json.loads((tmp_path / "sac" / "state.json").read_text())["nets"]
    assert run.metrics["networks"] == "findings" and nets["critic_kind"] == "mlp"


def test_named_networks_bro_and_stratified_final_eval(tmp_path):
    cfg = TrainSACRequest(**TINY | {"final_eval_episodes": 3}, networks="bro", final_eval_targets="stratified")
    out = train_sac(cfg, FakeRun(tmp_path), make_feature_source("state"))
    state = json.loads((tmp_path / "sac" / "state.json").read_text())
    assert state["nets"] == asdict(network_config("bro")) | {"critic": [128], "actor": [256, 64], "normalize_obs": True}
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "sac" / "policy.safetensors"))
    assert t["critic.q.1.weight"].shape == (2, 1, 128)  # each twin's own LayerNorm gain
    assert t["critic.q.3.f.0.weight"].shape == (2, 128, 128)  # the residual block
    fe = out["final_eval"]
    assert fe["targets"] == "stratified" and [b["bin"] for b in fe["by_distance"]] == ["near", "middle", "far"]
    assert len(fe["target_radius"]) == 3 and len(fe["failed"]) == round(3 * (1 - fe["success_rate"]))
    # resume rebuilds the same networks from state.json (not from the request's default)
    more = train_sac(
        cfg.model_copy(update={"total_steps": 1200, "networks": None}),
        FakeRun(tmp_path),
        make_feature_source("state"),
        resume=True,
    )
    assert more["env_steps"] == 1200
    assert json.loads((tmp_path / "sac" / "state.json").read_text())["nets"]["critic_kind"] == "bro"
    with pytest.raises(ValueError, match="findings, bro, ln"):
        network_config("huge")


def test_stop_then_resume_continues_step_count(tmp_path):
    run = FakeRun(
        tmp_path, stop_after=60
    )  # one poll per vector step: the 61st poll stops it: 61 x 2 envs x 4 = 488 env steps
    out = train_sac(TrainSACRequest(**TINY), run, make_feature_source("state"))
    assert out.get("stopped") and out["env_steps"] == 488
    state = json.loads((tmp_path / "sac" / "state.json").read_text())
    assert state["num_timesteps"] == 122 and state["replay"]["saved"]
    first_updates = state["n_updates"]

    run2 = FakeRun(tmp_path)
    out2 = train_sac(TrainSACRequest(**TINY), run2, make_feature_source("state"), resume=True)
    assert out2["env_steps"] == 800 and not out2.get("stopped")
    assert out2["updates"] > first_updates
    assert [p["env_steps"] for p in out2["curve"]] == [400, 800]  # the first point survived the resume
    state2 = json.loads((tmp_path / "sac" / "state.json").read_text())
    assert state2["resumed"] == 1 and state2["episodes_started"] > state["episodes_started"]


def test_resume_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SAC checkpoint"):
        train_sac(TrainSACRequest(**TINY), FakeRun(tmp_path), make_feature_source("state"), resume=True)


def test_episode_steps_must_be_multiple_of_action_repeat():
    with pytest.raises(ValueError, match="multiple of action_repeat"):
        TrainSACRequest(episode_steps=1001, action_repeat=4)


class _Recorder:
    """A job runner that records what it was asked to start and trains nothing: the request's completion and the
    run record are what these tests read (the real RunStore on tmp)."""

    def __init__(self):
        self.keys: list[str] = []

    def submit(self, key, fn, on_error, stop=None):
        self.keys.append(key)

    def active(self):
        return []


def _sac_config(tmp_path, **fields) -> dict:
    """The run record's config of a SAC request sent through the trainer's job layer (jobs.train)."""
    from services.trainer import jobs
    from vjepa_robot_lab.records.runs import RunStore

    ctx = jobs.TrainerContext(store=None, runs=RunStore(tmp_path / "runs"), encoder_url=None)  # type: ignore[arg-type]
    created = jobs.train(ctx, _Recorder(), TrainSACRequest(buffer_size=10_000, **fields))
    rec = ctx.runs.get(created.run_id)
    assert rec.lineage.action_repeat == rec.config.action_repeat  # evaluation acts at the rate the config names
    return rec.config.model_dump(mode="json")


def test_sac_action_repeat_left_out_is_the_tasks(tmp_path):
    """Issue 30: tasks.py's per-task action repeats are SAC's defaults; the run's config names the value used."""
    from vjepa_robot_lab.envs.tasks import task_spec
    from vjepa_robot_lab.records.run_kinds import SAC, complete_sac

    assert TrainSACRequest(task="cheetah-run").action_repeat is None  # left out: the trainer fills it
    assert SAC.prepare is complete_sac
    cheetah = _sac_config(tmp_path / "c", task="cheetah-run")
    walker = _sac_config(tmp_path / "w", task="walker-walk")
    assert cheetah["action_repeat"] == task_spec("cheetah-run").action_repeat == 4
    assert walker["action_repeat"] == task_spec("walker-walk").action_repeat == 2
    assert _sac_config(tmp_path / "p", task="cartpole-swingup")["action_repeat"] == 8
    easy = _sac_config(tmp_path / "e")  # reacher: 4 as before, and its 200-step training episodes
    assert easy["action_repeat"] == 4 and easy["train_episode_steps"] == 200
    # an explicit value wins, on any task
    assert _sac_config(tmp_path / "x", task="walker-walk", action_repeat=4)["action_repeat"] == 4
    assert complete_sac(TrainSACRequest(task="cartpole-balance", action_repeat=1)).action_repeat == 1
    # a study's runs all carry the filled value
    study = _sac_config(tmp_path / "s", task="finger-spin", seeds=[0, 1])
    assert study["action_repeat"] == 2


def test_sac_task_action_repeat_is_checked_on_the_filled_value(tmp_path):
    from vjepa_robot_lab.records.refused import Refused
    from vjepa_robot_lab.records.run_kinds import complete_sac

    assert TrainSACRequest(task="cartpole-swingup", episode_steps=500).episode_steps == 500  # not checked yet
    why = r"cartpole-swingup's is 8 .*episode_steps \(500\) .*multiple of action_repeat \(8\)"
    with pytest.raises(Refused, match=why):
        complete_sac(TrainSACRequest(task="cartpole-swingup", episode_steps=500))
    with pytest.raises(Refused, match="train_episode_steps") as e:
        complete_sac(TrainSACRequest(task="cartpole-balance", train_episode_steps=100))
    assert e.value.status_code == 422
    with pytest.raises(ValueError, match="multiple of action_repeat"):  # an explicit value is checked at once
        TrainSACRequest(task="walker-walk", episode_steps=1000, action_repeat=3)


def test_old_sac_records_keep_their_action_repeat():
    """A record written when the default was 4 on every task names it in its config: it reads as it was written."""
    from vjepa_robot_client.contract import RunRecord
    from vjepa_robot_lab.records.run_kinds import complete_sac

    old = RunRecord.model_validate(
        {
            "run_id": "sac-0123abcd",
            "kind": "sac",
            "status": "succeeded",
            "config": {"features": "state", "task": "walker-walk", "episode_steps": 1000, "action_repeat": 4},
            "lineage": {"features": "state", "action_repeat": 4, "task": "walker-walk"},
        }
    )
    assert old.config.action_repeat == 4 and old.lineage.action_repeat == 4
    again = TrainSACRequest.model_validate(old.config.model_dump(mode="json"))  # as jobs.run_training reads it
    assert complete_sac(again).action_repeat == 4


def test_train_sac_help_says_the_default_is_the_tasks():
    from vjepa_robot.train_commands import field_help

    text = field_help(TrainSACRequest, "action_repeat", False)
    assert "Omitted: the task's" in text and "Default 4" not in text


def _buffer(n: int, dim: int, n_envs: int = 1, **kw) -> Replay:
    return Replay(n, n_envs, dim, **kw)


def test_replay_memory_accounting():
    buf = _buffer(10_000, 1024)
    assert buf.observations.dtype == np.float16 and not hasattr(buf, "next_observations")
    assert abs(buf.nbytes - replay_bytes(10_000, 1024)) < 1e-3 * buf.nbytes
    # 1M x 1024: 2.1 GB, against 8.2 GB for float32 obs + float32 next obs
    assert replay_bytes(1_000_000, 1024) < 2.2e9 < 2 * 1_000_000 * 1024 * 4


def test_replay_next_obs_by_index_and_terminals(tmp_path):
    buf = _buffer(8, 3, n_envs=2)  # 4 slots per env

    def add(t, done):
        obs = np.full((2, 3), t, np.float32)
        nxt = np.full((2, 3), t + 1, np.float32)
        nxt[done] = 100 + t  # terminal observation, different from the next episode's first
        buf.add(obs, nxt, np.zeros((2, 2)), np.ones(2), done, truncated=done)

    add(0, np.array([False, False]))
    add(1, np.array([True, False]))
    add(2, np.array([False, False]))
    nxt = buf.next_observations_at(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))[:, 0]
    assert list(nxt) == [1, 1, 101, 2]  # slot 1 of env 0 ended: its next is the terminal obs, not slot 2
    s = buf.batch_at(np.array([0, 1, 1]), np.array([0, 0, 1]))
    assert buf.size() == 2 and np.all(s.dones.numpy() == 0)  # time-limit endings bootstrap
    rng = np.random.default_rng(0)
    for _ in range(50):  # the newest slot (2) is never sampled
        assert buf.sample(16, rng).obs.max() < 2
    buf.save_npy(tmp_path)
    b2 = _buffer(8, 3, n_envs=2)
    b2.load_npy(tmp_path, buf.pos, buf.full)
    assert b2.pos == 2 and b2.has_terminal[1].all()  # newest dropped; slot 1 keeps its successor aside
    assert np.all(b2.terminal_obs[(1, 1)] == 2) and np.all(b2.terminal_obs[(1, 0)] == 101)


def test_vec_env_resets_and_reports_terminal_observation():
    venv = ReacherVecEnv(make_feature_source("state"), num_envs=2, episode_steps=8, action_repeat=4, seed=3)
    obs = venv.reset()
    assert obs.shape == (2, 8) and obs.dtype == np.float32
    venv.step(np.zeros((2, 2)))
    obs, r, done, infos = venv.step(np.zeros((2, 2)))
    assert done.all() and all(i["TimeLimit.truncated"] for i in infos)
    assert all(i["terminal_observation"].shape == (8,) for i in infos)
    assert len(venv.completed) == 2 and venv.episodes_started == 4


def test_replay_n_step_returns_stop_at_episode_end():
    buf = _buffer(16, 1, n_step=3, gamma=0.5)
    for t in range(6):
        done = np.array([t == 1])
        nxt = np.array([[100.0 + t if done[0] else t + 1.0]])
        buf.add(np.array([[float(t)]]), nxt, np.zeros((1, 2)), np.ones(1), done, truncated=done)
    s = buf.batch_at(np.array([0, 2]), np.array([0, 0]))
    assert s.rewards[:, 0].tolist() == [1.5, 1.75]  # slot 0: its episode ends at slot 1; slot 2: three steps
    assert s.discounts[:, 0].tolist() == [0.25, 0.125]
    assert s.next_obs[:, 0].tolist() == [101.0, 5.0] and s.dones.sum() == 0
    assert buf.size() == 3  # slots 3..5 lack a full, written n-step window


def test_actor_log_prob_is_the_squashed_gaussian_density():
    torch.manual_seed(0)
    agent = SAC(8, TrainSACRequest(), Nets())
    obs = torch.randn(64, 8)
    action, log_prob = agent.actor.sample(obs)
    mu, log_std = agent.actor(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mu, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    want = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1, keepdim=True)
    assert action.shape == (64, 2) and log_prob.shape == (64, 1) and action.abs().max() < 1
    assert torch.allclose(log_prob, want, atol=2e-2)


@pytest.mark.parametrize("kind", ["mlp", "ln", "bro"])
def test_update_fits_the_critic_and_tunes_the_temperature(kind):
    torch.manual_seed(0)
    nets = Nets(actor=(32,), critic=(32,), critic_kind=kind, critic_blocks=1)
    agent = SAC(3, TrainSACRequest(lr=3e-3, init_entropy_coef=0.1), nets)
    buf = _buffer(64, 3)
    rng = np.random.default_rng(0)
    for _ in range(40):  # one-step episodes with reward 1 that truly terminate: Q(s, a) = 1
        buf.add(
            rng.normal(size=(1, 3)),
            rng.normal(size=(1, 3)),
            rng.uniform(-1, 1, (1, 2)),
            np.ones(1),
            np.ones(1, bool),
            truncated=np.zeros(1, bool),
        )
    b = buf.sample(32, rng)
    with torch.no_grad():
        q0 = float(torch.min(*agent.critic(b.obs, b.actions)).mean())
    for _ in range(300):
        m = agent.update(buf.sample(32, rng))
    with torch.no_grad():
        q1, q2 = agent.critic(b.obs, b.actions)
    assert abs(q0 - 1) > 0.3 and float((q1 - 1).abs().max()) < 0.15 and float((q2 - 1).abs().max()) < 0.15
    assert agent.updates == 300 and m["alpha"] != 0.1  # the temperature moved


def test_every_fires_once_per_crossing():
    due = Every(400, start=0)
    assert [s for s in (128, 392, 400, 408, 1200, 1300, 1600) if due(s)] == [400, 1200, 1600]
    assert not Every(400, start=488)(500) and Every(400, start=488)(800)


def test_linear_lr_decay_reaches_lr_final(tmp_path):
    from vjepa_robot_lab.learning.sac import linear_lr

    cfg = TrainSACRequest(**TINY, lr_final=1e-4)  # learning_starts 200, total 800
    assert linear_lr(cfg, 0) == linear_lr(cfg, 200) == 1e-3 and linear_lr(cfg, 800) == pytest.approx(1e-4)
    assert linear_lr(cfg, 500) == pytest.approx(5.5e-4)
    train_sac(cfg, FakeRun(tmp_path), make_feature_source("state"))
    optim = torch.load(tmp_path / "sac" / "optim.pt", weights_only=True)
    lrs = {g["lr"] for opt in ("actor", "critic", "alpha") for g in optim[opt]["param_groups"]}
    assert len(lrs) == 1 and 1e-4 <= lrs.pop() < 2e-4  # the last vector step's lr: near the end of the decay


def test_state_features_of_another_task_are_refused_before_training(tmp_path):
    cfg = TrainSACRequest(**TINY | {"task": "finger-spin", "action_repeat": 2})
    with pytest.raises(ValueError, match="made for task easy .*this run's task is finger-spin"):
        train_sac(cfg, FakeRun(tmp_path), make_feature_source("state"))


def test_train_episode_steps_shortens_training_episodes_only(tmp_path):
    run = FakeRun(tmp_path)  # 100-step training episodes, 800 steps on 2 envs: 8 training episodes
    out = train_sac(
        TrainSACRequest(**TINY | {"train_episode_steps": 100, "episode_steps": 200}), run, make_feature_source("state")
    )
    assert out["train_episodes"] == 8 and out["episode_steps"] == 200
    assert 0 <= out["final_eval"]["mean_return"] <= 200 and policy_from_checkpoint(tmp_path).episode_steps == 200
    with pytest.raises(ValueError, match=r"train_episode_steps \(102\) .* multiple of action_repeat \(4\)"):
        TrainSACRequest(**TINY | {"train_episode_steps": 102})


def _fused_update(agent: SAC, b) -> dict:
    """The one gradient step as sac.py wrote it before the agent/workspace split (every checkpoint before it was
    trained so): sample on obs, temperature step, sample on next obs, critic step, actor step, targets."""
    import torch.nn.functional as F

    obs = agent.embed(b.obs)
    with torch.no_grad():
        next_obs = agent.embed(b.next_obs)
    action_pi, log_prob = agent.actor.sample(obs.detach())
    alpha = agent.log_alpha.detach().exp()
    alpha_loss = -(agent.log_alpha * (log_prob.detach() + agent.target_entropy)).mean()
    agent.alpha_opt.zero_grad()
    alpha_loss.backward()
    agent.alpha_opt.step()
    with torch.no_grad():
        next_action, next_log_prob = agent.actor.sample(next_obs)
        q1_next, q2_next = agent.critic_target(next_obs, next_action)
        y = b.rewards + (1 - b.dones) * b.discounts * (torch.min(q1_next, q2_next) - alpha * next_log_prob)
    q1, q2 = agent.critic(obs, b.actions)
    critic_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
    agent.critic_opt.zero_grad()
    critic_loss.backward()
    agent.critic_opt.step()
    agent.critic.requires_grad_(False)
    q1_pi, q2_pi = agent.critic(obs.detach(), action_pi)
    actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
    agent.actor_opt.zero_grad()
    actor_loss.backward()
    agent.actor_opt.step()
    agent.critic.requires_grad_(True)
    with torch.no_grad():
        for p, p_targ in zip(agent.critic.parameters(), agent.critic_target.parameters()):
            p_targ.lerp_(p, agent.tau)
    agent.updates += 1
    return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item()}


def _seeded_agent(dim: int, cfg: TrainSACRequest, nets: Nets, pooler=None) -> SAC:
    from vjepa_robot_lab.threads import seeded_torch

    with seeded_torch(7) as generator:  # as the workspace builds it: networks, then the actor's private noise
        agent = SAC(dim, cfg, nets, pooler)
    agent.actor.generator = generator
    return agent


@pytest.mark.parametrize("attentive", [False, True])
def test_split_update_repeats_the_fused_update_bit_for_bit_and_snapshots_round_trip(attentive, tmp_path):
    """update() = update_critic + update_actor_and_alpha gives the numbers of the fused step it replaced (same noise
    order), and a state_dict() written and read back as a checkpoint carries an agent on exactly."""
    from vjepa_robot_lab.learning import sac_checkpoint
    from vjepa_robot_lab.learning.replay import Batch
    from vjepa_robot_lab.perception.readouts import PoolerConfig

    pooler = PoolerConfig(dim=16, tokens=4) if attentive else None
    dim = 64 if attentive else 8
    cfg = TrainSACRequest(lr=3e-3, lr_final=1e-4, total_steps=1000, learning_starts=0)
    nets = Nets(actor=(32,), critic=(32,), critic_kind="ln")
    split, fused = _seeded_agent(dim, cfg, nets, pooler), _seeded_agent(dim, cfg, nets, pooler)
    g = torch.Generator().manual_seed(0)
    batches = [
        Batch(
            obs=torch.randn(16, dim, generator=g),
            actions=torch.rand(16, 2, generator=g) * 2 - 1,
            rewards=torch.rand(16, 1, generator=g),
            discounts=torch.full((16, 1), 0.97),
            next_obs=torch.randn(16, dim, generator=g),
            dones=torch.zeros(16, 1),
        )
        for _ in range(6)
    ]
    for step, b in enumerate(batches[:4]):
        fused.set_lr(split.cfg.lr + (cfg.lr_final - cfg.lr) * step * 100 / 1000)  # linear_lr at env step 100 * step
        assert split.update(b, step * 100) == _fused_update(fused, b)
    a, f = split.state_dict(), fused.state_dict()
    assert a["updates"] == f["updates"] == 4 and a["tensors"].keys() == f["tensors"].keys()
    assert all(torch.equal(a["tensors"][k], f["tensors"][k]) for k in a["tensors"])
    assert a["optim"]["critic"]["param_groups"][0]["lr"] == pytest.approx(3e-3 - 2.9e-3 * 0.3)

    snap = split.state_dict()  # through the checkpoint files, as the workspace saves and resumes
    sac_checkpoint.save(tmp_path, snap["tensors"], snap["optim"], {"format": 2, "n_updates": snap["updates"]})
    ck = sac_checkpoint.load(tmp_path)
    restored = _seeded_agent(dim, cfg, nets, pooler)
    restored.load_state_dict({"tensors": ck.tensors, "optim": ck.optim, "updates": ck.state["n_updates"]})
    restored.actor.generator.set_state(split.actor.generator.get_state())
    for b in batches[4:]:
        assert restored.update(b, 400) == split.update(b, 400)
    r, s = restored.state_dict(), split.state_dict()
    assert r["updates"] == 6 and all(torch.equal(r["tensors"][k], s["tensors"][k]) for k in s["tensors"])
    assert r["optim"]["actor"]["state"][0]["step"] == s["optim"]["actor"]["state"][0]["step"] == 6
