"""Readouts (vjepa_robot_lab/perception/readouts/): the registry (and a fake readout registered in a test), FLARE's
fusion values, the attentive pooler's shapes and that it learns where something is on a grid, readout checkpoints,
and the readout plumbing through the real trainer service (tiny random-init encoder over HTTP, grid streams live)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
from conftest import poll_json, unique_name
from test_features import _replay

from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
from vjepa_robot_lab.envs.env import StepType, TimeStep, train_episode_seed
from vjepa_robot_lab.perception.features import RandomFeatures, StateFeatures
from vjepa_robot_lab.perception.readouts import (
    AttentivePooler,
    FlareFeatures,
    GridFeatures,
    PoolerConfig,
    default_heads,
    flare_fuse,
    flare_table,
    with_readout,
)

# ----------------------------------------------------------------------------------------------------------------
# FLARE
# ----------------------------------------------------------------------------------------------------------------


def test_flare_fuses_differences_then_the_latest():
    e = [np.array([[1.0, 10.0]]), np.array([[3.0, 20.0]]), np.array([[6.0, 40.0]])]  # e_{t-2}, e_{t-1}, e_t
    np.testing.assert_array_equal(flare_fuse(e), [[2.0, 10.0, 3.0, 20.0, 6.0, 40.0]])


def test_flare_table_pads_each_episode_with_its_first_embedding():
    episode = np.array([0, 0, 0, 0, 1, 1])
    step = np.array([0, 1, 2, 3, 0, 1])
    x = np.array([[1.0], [2.0], [4.0], [8.0], [100.0], [101.0]])
    f = flare_table(x, episode, step)
    np.testing.assert_array_equal(
        f,
        [
            [0, 0, 1],
            [0, 1, 2],
            [1, 2, 4],
            [2, 4, 8],  # step 0: (0, 0, e0)
            [0, 0, 100],
            [0, 1, 101],
        ],
    )  # a new episode never reaches into the last


def test_flare_offline_equals_online_and_resets_with_the_episode(tmp_store):
    spec = DatasetSpec(name="fl", episodes=2, steps=40, image_size=0, seed=3)
    create_dataset(spec, tmp_store, workers=1, progress=False)
    src = FlareFeatures(StateFeatures())
    table = src.offline(tmp_store, "fl")
    assert table.x.shape == (80, 24) and src.dim == 24 and table.lineage["readout"] == "flare"
    for ep in range(2):  # one FlareFeatures for both episodes: the second starts from its own first embedding
        seed = train_episode_seed(spec.seed, ep)
        online = np.concatenate([src.online([ts], [seed]) for ts in _replay(spec, ep)])
        np.testing.assert_allclose(online, table.x[table.episode == ep], rtol=1e-5, atol=1e-5)
    # a vector env's terminal step (embedded apart, after its lane reset) still fuses with its own episode
    ts = _replay(spec, 1)
    seed = train_episode_seed(spec.seed, 1)
    for t in ts[:5]:
        src.online([t], [seed])
    other = src.online([ts[0]], [seed + 1])  # another episode in between changes nothing for this one
    term = src.online_detached([ts[5]], [seed])
    np.testing.assert_allclose(term, table.x[(table.episode == 1) & (table.step == 5)], rtol=1e-5, atol=1e-5)
    assert other.shape == (1, 24)


# ----------------------------------------------------------------------------------------------------------------
# The attentive pooler
# ----------------------------------------------------------------------------------------------------------------


def test_pooler_shapes_and_defaults():
    assert default_heads(1024) == 16 and default_heads(96) == 4  # V-JEPA 2's ViT-L probe; the tiny stand-in
    cfg = PoolerConfig(dim=96, tokens=16)
    assert (cfg.num_heads, cfg.num_queries, cfg.depth) == (4, 1, 1)
    pooler = AttentivePooler(cfg)
    x = torch.randn(5, 16, 96)
    assert pooler(x).shape == (5, 96)
    assert torch.equal(pooler(x), pooler(x.reshape(5, -1)))  # flat rows, as the feature sources answer
    deep = AttentivePooler(PoolerConfig(dim=96, tokens=16, num_queries=2, depth=3))
    assert len(deep.blocks) == 2 and deep(x).shape == (5, 192)
    with pytest.raises(ValueError, match="divide"):
        PoolerConfig(dim=96, tokens=16, num_heads=5)
    perm = torch.randperm(16)
    assert not torch.allclose(pooler(x), pooler(x[:, perm]), atol=1e-5)  # the position code sees the order


def test_pooler_learns_where_the_blob_is_and_the_mean_cannot():
    """A 4x4 grid of noise tokens with a bright token in one cell; the target is that cell's (column, row).
    The mean over tokens is the same wherever the blob is, so an MLP on it scores ~0; the attentive pooler has to
    find the blob and read its cell (measured R2 ~0.8 at 600 steps, D=96)."""
    from vjepa_robot_lab.perception.probe import fit_attentive, fit_mlp, r2_score

    rng = np.random.default_rng(0)
    n, g, d = 2400, 4, 64
    cell = rng.integers(0, g * g, n)
    x = rng.standard_normal((n, g * g, d)).astype(np.float32) * 0.5
    x[np.arange(n), cell, 0] += 3.0
    y = np.stack([cell % g, cell // g], 1).astype(np.float64)
    tr, va, te = slice(0, 1800), slice(1800, 2100), slice(2100, n)
    flat = x.reshape(n, -1)
    predict = fit_attentive(flat[tr], y[tr], flat[va], y[va], g * g, seed=0, max_steps=500, batch_size=128)
    r2_att = r2_score(y[te], predict(flat[te]))
    mean = x.mean(1)
    r2_mean = r2_score(y[te], fit_mlp(mean[tr], y[tr], mean[va], y[va], max_steps=300)(mean[te]))
    assert r2_att > 0.5, r2_att
    assert r2_mean < 0.1, r2_mean


# ----------------------------------------------------------------------------------------------------------------
# Readout sources, BC and SAC checkpoints (no encoder: random grids, state)
# ----------------------------------------------------------------------------------------------------------------


def test_random_grids_and_state_refusal(tmp_store):
    spec = DatasetSpec(name="rg", episodes=2, steps=20, image_size=0, seed=1)
    create_dataset(spec, tmp_store, workers=1, progress=False)
    src = with_readout(RandomFeatures(), "attentive", grid_size=2)
    assert isinstance(src, GridFeatures) and (src.tokens, src.token_dim) == (4, 96) and src.dim == 384
    table = src.offline(tmp_store, "rg")
    seed = train_episode_seed(spec.seed, 1)
    live = src.online([TimeStep(StepType.MID, {}, step=7)], [seed])
    np.testing.assert_array_equal(live[0], table.x[(table.episode == 1) & (table.step == 7)][0])
    assert table.lineage["pooling"] == "grid" and table.lineage["grid_size"] == 2
    with pytest.raises(ValueError, match="readout 'attentive'.*state"):
        with_readout(StateFeatures(), "attentive")
    with pytest.raises(ValueError, match="mean, attentive, flare"):
        with_readout(StateFeatures(), "max")


# ----------------------------------------------------------------------------------------------------------------
# The registry (readouts/__init__.py): the contract's readouts, and a new one as one module would add it
# ----------------------------------------------------------------------------------------------------------------


def test_registry_holds_the_contracts_readouts_in_its_order():
    from vjepa_robot_client.contract import READOUTS as CONTRACT_READOUTS
    from vjepa_robot_lab.perception.readouts import READOUTS, get_readout

    assert tuple(READOUTS) == CONTRACT_READOUTS  # every contract name found a module (pkgutil), none other
    att, flare = get_readout("attentive"), get_readout("flare")
    assert (att.reads_grid, att.learned, att.config_key) == (True, True, "pooler")
    assert (flare.reads_grid, flare.learned, get_readout("mean").reads_pixels) == (False, False, True)
    assert isinstance(att.network(att.network_config(with_readout(RandomFeatures(), "attentive", 2))), AttentivePooler)


@pytest.fixture
def toy_readout():
    """A FAKE readout, registered for one test and removed after: "toy" is no contract name (requests cannot ask
    for it); it stands for the one module a new readout is. Its source reads [x, x**2] (2D) of the base's rows,
    it refuses state features, and its learned network is one Linear layer whose config checkpoints keep under
    "toy_net"."""
    from dataclasses import dataclass

    from torch import nn

    from vjepa_robot_client.contract import Pooling
    from vjepa_robot_lab.perception.features import FeatureSource, FeatureTable
    from vjepa_robot_lab.perception.readouts import READOUTS, ReadoutKind, readout_lineage, register

    class Squares(FeatureSource):
        readout = "toy"

        def __init__(self, base):
            self.base, self.name, self.dim = base, base.name, 2 * base.dim

        def lineage(self):
            return {**self.base.lineage(), "dim": self.dim, **readout_lineage("toy")}

        def offline(self, store, dataset):
            t = self.base.offline(store, dataset)
            return FeatureTable(t.episode, t.step, np.concatenate([t.x, t.x**2], axis=1), self.lineage())

        def online(self, timesteps, episode_seeds):
            x = self.base.online(timesteps, episode_seeds)
            return np.concatenate([x, x**2], axis=1)

    @dataclass
    class ToyNetConfig:
        dim: int
        width: int = 4

    class ToyNet(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg, self.out_dim, self.lin = cfg, cfg.width, nn.Linear(cfg.dim, cfg.width)

        def forward(self, x):
            return self.lin(x)

    class ToyReadout(ReadoutKind):
        name, pooling, source_type = "toy", Pooling.mean, Squares
        network_type, config_key = ToyNetConfig, "toy_net"

        def wrap(self, base, grid_size=4):
            self.check(base.name)
            return Squares(base)

        def check(self, features):
            super().check(features)
            if features == "state":
                raise ValueError("readout 'toy' does not read state")

        def network_config(self, source):
            return ToyNetConfig(dim=source.dim)

        def network(self, config):
            return ToyNet(config)

    kind = register(ToyReadout())
    try:
        yield kind
    finally:
        READOUTS.pop("toy")


def test_a_registered_toy_readout_is_found_trained_saved_and_rebuilt(toy_readout, tmp_store, tmp_path):
    from safetensors import safe_open

    from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy
    from vjepa_robot_lab.learning.bc import fit_bc, load_bc_policy, save_bc_policy
    from vjepa_robot_lab.perception.readouts import check_readout, get_readout, is_readout_source, readout_lineage

    assert get_readout("toy") is toy_readout
    assert readout_lineage("toy") == {"readout": "toy", "pooling": "mean", "grid_size": None}
    with pytest.raises(ValueError, match="does not read state"):
        check_readout("state", "toy")
    with pytest.raises(ValueError, match="readout must be 'mean', not 'toy'"):
        check_readout("pixels", "toy")  # the base class's refusal, for every readout that does not read pixels
    with pytest.raises(ValueError, match="mean, attentive, flare, toy"):
        get_readout("max")

    spec = DatasetSpec(name="toy", episodes=3, steps=12, image_size=0, seed=4)
    create_dataset(spec, tmp_store, workers=1, progress=False)
    src = with_readout(RandomFeatures(), "toy")  # through the library's one entry point, not the class
    table = src.offline(tmp_store, "toy")
    assert is_readout_source(src) and table.x.shape == (36, 2 * RandomFeatures().dim)
    np.testing.assert_allclose(table.x[:, src.base.dim :], table.x[:, : src.base.dim] ** 2, rtol=1e-6)

    rows = np.arange(36)
    y = np.tanh(table.x[:, :2]).astype(np.float32)
    cfg = toy_readout.network_config(src)
    model, _ = fit_bc(table.x, y, rows[:30], rows[30:], epochs=1, batch_size=16, pooler=cfg)  # BC, unedited
    assert type(model.pooler).__name__ == "ToyNet" and model.net[0].in_features == cfg.width
    path = save_bc_policy(tmp_path / "toy.safetensors", model, {"config": {"readout": "toy", "features": "random"}})
    with safe_open(str(path), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert json.loads(meta["toy_net"]) == {"dim": cfg.dim, "width": 4} and "pooler" not in meta
    assert {"pooler.lin.weight", "pooler.lin.bias"} <= set(keys)  # BC's slot for a readout's network
    policy = load_bc_policy(path)  # rebuilt from "toy_net" by the registry
    assert type(policy.model.pooler).__name__ == "ToyNet" and policy.readout == "toy"
    x = table.x[:5]
    with torch.no_grad():
        np.testing.assert_array_equal(policy(x), model(torch.from_numpy(np.ascontiguousarray(x))).numpy())
    live = FeaturePolicy(policy, RandomFeatures())  # evaluation wraps the plain source with the run's readout
    assert isinstance(live.features, toy_readout.source_type) and live.label.endswith(", toy readout")
    assert FeaturePolicy(policy, src).features is src  # a toy source is taken as given


def test_bc_checkpoints_keep_their_readout(tmp_store, tmp_path):
    from safetensors import safe_open

    from vjepa_robot_client.contract import TrainBCRequest
    from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy
    from vjepa_robot_lab.learning.bc import load_bc_policy, train_bc
    from vjepa_robot_lab.records.runs import RunStore

    create_dataset(
        DatasetSpec(name="ck", episodes=6, steps=30, image_size=0, seed=2), tmp_store, workers=1, progress=False
    )
    runs = RunStore(tmp_path / "runs")
    for features, readout, dim in (("random", "attentive", 16 * 96), ("state", "flare", 24)):
        cfg = TrainBCRequest(dataset="ck", features=features, readout=readout, epochs=2, batch_size=64)
        run = runs.create("bc", cfg.model_dump(mode="json"))
        src = RandomFeatures() if features == "random" else StateFeatures()
        metrics = train_bc(cfg, run, src, tmp_store)
        assert metrics["dim"] == dim and metrics["readout"] == readout
        policy = load_bc_policy(run.dir)
        assert policy.readout == readout and policy.dim == dim
        with safe_open(str(run.dir / "policy.safetensors"), framework="pt") as f:
            assert any(k.startswith("pooler.") for k in f.keys()) == (readout == "attentive")
        x = np.random.default_rng(0).standard_normal((3, dim)).astype(np.float32)
        assert policy(x).shape == (3, 2)
        live = FeaturePolicy(policy, src)  # evaluation reads through the run's readout
        assert live.features.dim == dim and readout in live.label


def test_sac_attentive_shares_one_pooler_trained_by_the_critic(tmp_path):
    from vjepa_robot_client.contract import TrainSACRequest
    from vjepa_robot_lab.learning.replay import Batch
    from vjepa_robot_lab.learning.sac import SAC, Nets, policy_from_checkpoint, train_sac
    from vjepa_robot_lab.records.runs import RunStore

    cfg = TrainSACRequest(features="random", readout="attentive", grid_size=2)
    agent = SAC(4 * 16, cfg, Nets(), PoolerConfig(dim=16, tokens=4))
    b = Batch(
        obs=torch.randn(8, 64),
        actions=torch.rand(8, 2),
        rewards=torch.rand(8, 1),
        discounts=torch.ones(8, 1),
        next_obs=torch.randn(8, 64),
        dones=torch.zeros(8, 1),
    )
    before = {k: v.clone() for k, v in agent.pooler.state_dict().items()}
    actor_ids = {id(p) for p in agent.actor_opt.param_groups[0]["params"]}
    assert not actor_ids & {id(p) for p in agent.pooler.parameters()}  # only the critic's optimiser steps it
    agent.update(b)
    assert any(not torch.equal(before[k], v) for k, v in agent.pooler.state_dict().items())

    cfg = TrainSACRequest(
        features="random",
        readout="attentive",
        grid_size=2,
        total_steps=60,
        parallel_envs=2,
        episode_steps=30,
        action_repeat=1,
        learning_starts=20,
        eval_every=1000,
        checkpoint_every=1000,
        eval_episodes=1,
        final_eval_episodes=2,
        buffer_size=500,
        batch_size=16,
        updates_per_transition=1,
    )
    run = RunStore(tmp_path / "runs").create("sac", cfg.model_dump(mode="json"))
    metrics = train_sac(cfg, run, RandomFeatures())
    act = policy_from_checkpoint(run.dir)
    assert metrics["dim"] == 4 * 96 and act.readout == "attentive" and act.grid_size == 2
    assert act(np.zeros((3, 4 * 96), np.float32)).shape == (3, 2)


# ----------------------------------------------------------------------------------------------------------------
# Through the real trainer service
# ----------------------------------------------------------------------------------------------------------------


# `stack` (conftest, session): the one tiny encoder service and trainer service; names here are unique_name()s.


def _terminal(b: dict) -> bool:
    return b["status"] in ("succeeded", "failed", "interrupted")


def test_unknown_readout_and_state_attentive_are_422(stack):
    c = httpx.Client(base_url=stack["trainer"], timeout=30)
    r = c.post("/train/bc", json={"dataset": "nope", "features": "state", "readout": "max"})
    assert r.status_code == 422 and all(w in r.text for w in ("mean", "attentive", "flare")), r.text
    r = c.post("/train/sac", json={"features": "state", "readout": "attentive", "total_steps": 10})
    assert r.status_code == 422 and "state" in r.text and "attentive" in r.text, r.text
    r = c.post("/train/sac", json={"features": "random", "readout": "mean", "grid_size": 0})
    assert r.status_code == 422 and "grid_size" in r.text, r.text
    assert c.get("/healthz").status_code == 200


@pytest.mark.slow
def test_readouts_through_the_service_train_and_evaluate_live(stack):
    """BC with attentive on a dataset that holds mean embeddings only embeds the grids first (said in the run's
    phase), trains, and evaluates live on a grid stream; flare evaluates on the 3-window history; SAC attentive
    trains live on grid streams. Tiny budgets: this is plumbing, not a result."""
    from services.common.store import Store
    from vjepa_robot_client import TrainerClient
    from vjepa_robot_client.contract import pooled_encoder_id

    c = httpx.Client(base_url=stack["trainer"], timeout=60)
    ro = unique_name("ro")
    r = c.post("/datasets", json={"name": ro, "episodes": 4, "steps": 20, "seed": 1, "image_size": 32, "workers": 1})
    assert r.status_code == 202, r.text
    assert poll_json(c, f"/datasets/{ro}", lambda b: b["status"] != "running")["status"] == "ready"
    tr = TrainerClient(stack["trainer"])
    mean_id = tr.wait(tr.train_bc(ro, features="vjepa2", epochs=2, batch_size=16), progress=False, poll_interval=0.2)
    assert mean_id.status.value == "succeeded", mean_id.error
    base_id = httpx.get(f"{stack['encoder']}/info").json()["encoder_id"]
    store = Store(stack["store"])
    grid_id = pooled_encoder_id(base_id, "grid", 2)
    assert not store.embedding_progress(ro, grid_id).complete  # mean embeddings only, so far

    run_id = tr.train_bc(ro, features="vjepa2", epochs=2, batch_size=16, readout="attentive", grid_size=2)
    run = tr.wait(run_id, progress=False, poll_interval=0.2)
    assert run.status.value == "succeeded", run.error
    assert run.metrics["phase"] == "trained"  # it said "embedding the ... grids first" while it did (issue 31)
    assert store.embedding_progress(ro, grid_id).complete
    lin = run.lineage
    assert (lin["readout"], lin["pooling"], lin["grid_size"]) == ("attentive", "grid", 2)
    assert lin["encoder_id"] == base_id  # the encoder evaluation must match; its grid rows' id is in the checkpoint
    from vjepa_robot_lab.learning.bc import load_bc_policy

    assert load_bc_policy(stack["runs"] / run_id).lineage["features"]["grid_encoder_id"] == grid_id

    flare = tr.wait(
        tr.train_bc(ro, features="vjepa2", epochs=2, batch_size=16, readout="flare"), progress=False, poll_interval=0.2
    )
    assert flare.status.value == "succeeded", flare.error
    assert (flare.lineage["readout"], flare.lineage["pooling"]) == ("flare", "mean")
    assert flare.metrics["dim"] == 3 * mean_id.metrics["dim"]

    for rid in (run_id, flare.run_id):
        r = c.post(f"/eval/{rid}", json={"episodes": 2, "steps": 20, "parallel_envs": 2, "gif_episodes": 0})
        assert r.status_code == 202, r.text
        ev = poll_json(c, f"/eval/{rid}", _terminal)
        assert ev["status"] == "succeeded" and len(ev["episodes"]) == 2, ev.get("error")

    sac = tr.wait(
        tr.train_sac(
            "vjepa2",
            total_steps=40,
            readout="attentive",
            grid_size=2,
            parallel_envs=2,
            episode_steps=20,
            action_repeat=1,
            learning_starts=20,
            eval_every=1000,
            checkpoint_every=1000,
            eval_episodes=1,
            final_eval_episodes=1,
            buffer_size=200,
            batch_size=8,
            image_size=32,
        ),
        progress=False,
        poll_interval=0.2,
    )
    assert sac.status.value == "succeeded", sac.error
    assert sac.lineage["readout"] == "attentive" and sac.metrics["final_eval"]["episodes"] == 1


def test_cli_train_takes_readout_and_names_the_choices(tmp_path):
    from typer.testing import CliRunner

    from services.common.store import Store
    from vjepa_robot.cli import app as cli_app

    store = str(tmp_path / "store")
    create_dataset(
        DatasetSpec(name="cli", episodes=4, steps=20, image_size=0, seed=0), Store(store), workers=1, progress=False
    )
    common = ["--store", store, "--runs-dir", str(tmp_path / "runs")]
    out = CliRunner().invoke(
        cli_app,
        [
            "train",
            "bc",
            "cli",
            "--features",
            "random",
            "--readout",
            "attentive",
            "--grid-size",
            "2",
            "--epochs",
            "1",
            *common,
        ],
    )
    assert out.exit_code == 0, out.output
    record = json.loads(next((tmp_path / "runs").glob("*/run.json")).read_text())
    assert record["config"]["readout"] == "attentive" and record["lineage"]["pooling"] == "grid"
    out = CliRunner().invoke(cli_app, ["train", "bc", "cli", "--features", "state", "--readout", "max", *common])
    assert out.exit_code == 2 and "attentive" in out.output and "flare" in out.output, out.output


def test_grid_rows_stream_into_a_memory_map_above_the_resident_limit(tiny_dataset):
    """Grids larger than VJEPA_ROBOT_GRID_RESIDENT_GB stream from the store into a memory-mapped file; both paths
    give the same (episode, step)-sorted float16 rows (written here episode 2, 0, 1: the sort is exercised)."""
    from services.common.store import EmbeddingLineage
    from vjepa_robot_lab.perception.features import read_grid_rows

    store, name, frames = tiny_dataset
    lineage = EmbeddingLineage("toy-grid2", "toy", "none", dim=8, tokens=4, dtype="float16")
    rng = np.random.default_rng(0)
    written = {ep: rng.standard_normal((10, 4, 8)).astype(np.float16) for ep in (2, 0, 1)}
    for ep, grids in written.items():
        store.append_embeddings(name, ep, np.arange(10), grids, lineage)
    mem = read_grid_rows(store, name, "toy-grid2", resident_gb=100)
    mapped = read_grid_rows(store, name, "toy-grid2", resident_gb=0, batch_rows=7)
    assert isinstance(mapped[2], np.memmap) and mapped[2].dtype == np.float16 and mapped[2].shape == (30, 4, 8)
    for a, b in zip(mem, mapped):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mapped[0], np.repeat([0, 1, 2], 10))
    np.testing.assert_array_equal(mapped[2][10:20], written[1])
