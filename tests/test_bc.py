"""BC (vjepa_robot_lab/learning/bc.py) on a small state-only jacobian dataset: it learns, random features don't, round
trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from services.common.store import Store
from vjepa_robot_client.contract import TrainBCRequest
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
from vjepa_robot_lab.learning.bc import BCPolicy, load_bc_data, load_bc_policy, split_by_episode, train_bc
from vjepa_robot_lab.perception.features import RandomFeatures, make_feature_source
from vjepa_robot_lab.records.runs import RunStore

DATASET = "jac-bc"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(str(tmp_path_factory.mktemp("store")))
    # image_size=0: state-only, ~4 s for 100 episodes x 200 steps
    create_dataset(
        DatasetSpec(name=DATASET, episodes=100, steps=200, seed=0, image_size=0), store=store, workers=1, progress=False
    )
    return store


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> RunStore:
    return RunStore(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def state_run(store, runs):
    cfg = TrainBCRequest(dataset=DATASET, features="state", epochs=30, seed=0)
    run = runs.create("bc", cfg.model_dump(mode="json"))
    metrics = train_bc(cfg, run, make_feature_source("state"), store)
    return cfg, run, metrics


def test_architecture_matches_findings():
    assert BCPolicy(1024).num_parameters() == 279_490  # the findings: "Parameters: 279,490"


def test_split_is_by_episode_and_seeded():
    episode = np.repeat(np.arange(20), 5)
    tr, va = split_by_episode(episode, 0.2, seed=3)
    assert set(episode[tr]).isdisjoint(episode[va]) and len(set(episode[va])) == 4
    assert np.array_equal(va, split_by_episode(episode, 0.2, seed=3)[1])
    assert len(split_by_episode(episode, 0.0, seed=3)[1]) == 0


def test_state_bc_learns_the_expert(store, state_run):
    cfg, run, metrics = state_run
    table, actions = load_bc_data(store, DATASET, make_feature_source("state"))
    action_var = float(actions.var(0).mean())
    assert metrics["epoch"] == metrics["epochs"] == 30 and len(metrics["val_loss_curve"]) == 30
    assert metrics["val_loss"] < 0.3 * action_var, (metrics["val_loss"], action_var)  # measured ~0.2x at 30 epochs
    assert metrics["train_loss_curve"][-1] < metrics["train_loss_curve"][0]

    # the trained policy's actions on held-out episodes follow the expert's
    policy = load_bc_policy(run.dir)
    val = np.isin(table.episode, policy.lineage["val_episodes"])
    assert 0 < val.sum() < len(val)
    pred = policy(table.x[val])
    assert pred.shape == (val.sum(), 2) and pred.dtype == np.float32
    for j in range(2):
        assert np.corrcoef(pred[:, j], actions[val, j])[0, 1] > 0.8

    # the service sees progress in the run record
    record = run.record
    assert record["metrics"]["epoch"] == 30 and record["metrics"]["val_loss"] == pytest.approx(metrics["val_loss"])


def test_random_features_do_much_worse(store, runs, state_run):
    cfg = TrainBCRequest(dataset=DATASET, features="random", epochs=10, batch_size=512, seed=0)
    run = runs.create("bc", cfg.model_dump(mode="json"))
    metrics = train_bc(cfg, run, RandomFeatures(dim=256), store)  # 256-d noise keeps the test fast
    assert metrics["val_loss"] > 3 * state_run[2]["val_loss"], (metrics["val_loss"], state_run[2]["val_loss"])


def test_checkpoint_round_trip(store, state_run):
    cfg, run, metrics = state_run
    path = run.dir / "policy.safetensors"
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert {"norm_mean", "norm_std"} <= set(f.keys())  # standardisation travels with the weights
    lineage = json.loads(meta["lineage"])
    assert lineage["dataset"] == DATASET and lineage["features"]["features"] == "state"
    assert lineage["config"]["epochs"] == 30 and lineage["metrics"]["n_train"] == metrics["n_train"]

    x = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    a, b = load_bc_policy(run.dir)(x), load_bc_policy(path)(x)
    assert np.array_equal(a, b) and np.all(np.abs(a) <= 1)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        load_bc_policy(run.dir)(x[0])


def test_stop_requested_ends_training_early(store, runs):
    cfg = TrainBCRequest(dataset=DATASET, features="state", epochs=50, seed=1)
    run = runs.create("bc", cfg.model_dump(mode="json"))
    runs.stop_event(run.run_id).set()
    metrics = train_bc(cfg, run, make_feature_source("state"), store)
    assert metrics["stopped"] and metrics["epoch"] < 50
    assert load_bc_policy(run.dir).dim == 8


@pytest.mark.slow
def test_bc_state_live_success(tmp_path):
    """Measured before: BC on state features from 150 jacobian demos succeeded 94% live; 300 demos keep it clear of
    90%. Here 300 demos of 100 steps, batches of 1024 for 50 epochs (16x fewer steps than 200-step demos at 256 x
    100): 98% on eval seeds 0, 1 and 2 (50 episodes each; 200-step demos: 100%); 200 demos of 200 steps fell to
    88-90%."""
    from vjepa_robot_lab.evaluation.evaluate import evaluate_policy

    store = Store(str(tmp_path / "store"))
    create_dataset(
        DatasetSpec(name="jac-live", episodes=300, steps=100, seed=0, image_size=0),
        store=store,
        workers=1,
        progress=False,
    )
    cfg = TrainBCRequest(dataset="jac-live", features="state", epochs=50, batch_size=1024, seed=0)
    run = RunStore(tmp_path / "runs").create("bc", cfg.model_dump(mode="json"))
    features = make_feature_source("state")
    train_bc(cfg, run, features, store)
    result = evaluate_policy(
        load_bc_policy(run.dir), features, task="easy", episodes=50, steps=200, seed=0, parallel_envs=8
    )
    assert result["success_rate"] >= 0.9, result["success_rate"]


def test_bf16_precision_matches_fp32(store):
    from vjepa_robot_lab.learning.bc import fit_bc

    table, actions = load_bc_data(store, DATASET, make_feature_source("state"))
    tr, va = split_by_episode(table.episode, 0.1, seed=0)
    losses = {}
    for precision in ("fp32", "bf16"):
        model, m = fit_bc(table.x, actions, tr, va, epochs=8, batch_size=512, precision=precision)
        losses[precision] = m["val_loss"]
        assert m["precision"] == precision and next(model.parameters()).dtype == torch.float32
    assert losses["bf16"] < 1.5 * losses["fp32"], losses
    with pytest.raises(ValueError, match="precision"):
        fit_bc(table.x, actions, tr, va, epochs=1, precision="fp8")


def test_best_validation_epoch_is_kept():
    """Pure-noise targets: training memorises them, validation MSE rises, and `best_val` keeps the best epoch's
    weights (their validation MSE, recomputed here, is the recorded minimum); `last` keeps the final epoch."""
    from vjepa_robot_lab.learning.bc import fit_bc

    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 32)).astype(np.float32)
    y = rng.uniform(-0.9, 0.9, (600, 2)).astype(np.float32)
    episode = np.repeat(np.arange(30), 20)
    tr, va = split_by_episode(episode, 0.3, seed=0)

    def val_mse(model):
        with torch.no_grad():
            return float(torch.mean((model(torch.from_numpy(x[va])) - torch.from_numpy(y[va])) ** 2))

    best, m = fit_bc(x, y, tr, va, epochs=40, batch_size=32, lr=3e-3, seed=0, threads=1)
    curve = m["val_loss_curve"]
    assert m["best_epoch"] == int(np.argmin(curve)) + 1 < len(curve)  # it did overfit: the minimum is not the end
    assert m["selected_epoch"] == m["best_epoch"] and m["select"] == "best_val"
    assert val_mse(best) == pytest.approx(m["best_val_loss"], rel=1e-4)
    assert val_mse(best) < curve[-1]

    last, m_last = fit_bc(x, y, tr, va, epochs=40, batch_size=32, lr=3e-3, seed=0, threads=1, select="last")
    assert m_last["selected_epoch"] == 40 and val_mse(last) == pytest.approx(curve[-1], rel=1e-4)
    with pytest.raises(ValueError, match="select"):
        fit_bc(x, y, tr, va, epochs=1, select="first")
