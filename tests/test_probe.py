"""The linear probe (services/trainer/probe.py): correct where the answer is known, state vs random features.

Finger xy = L1 (cos q1, sin q1) + L2 (cos(q1+q2), sin(q1+q2)), so it is NOT linear in the 8-d state features
(cos q1, sin q1, cos q2, sin q2, to_target, velocity): a linear probe measures R2 ~0.3 from them. In the basis
(cos q1, sin q1, cos(q1+q2), sin(q1+q2)) it is exactly linear, and the probe must find R2 ~1 there.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.common.store import Store, fixed_list_to_numpy
from services.trainer.datasets import DatasetSpec, create_dataset
from services.trainer.features import RandomFeatures, make_feature_source
from services.trainer.probe import probe, probe_arrays, r2_score, split_episodes_3

DATASET = "jac-probe"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(str(tmp_path_factory.mktemp("store")))
    create_dataset(DatasetSpec(name=DATASET, episodes=60, steps=200, seed=1, image_size=0), store=store, workers=1,
                   progress=False)
    return store


def test_split_three_ways_by_episode():
    episode = np.repeat(np.arange(10), 3)
    parts = split_episodes_3(episode, seed=0)
    sets = [set(episode[p]) for p in parts]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(len(p) for p in parts) == len(episode)


def test_r2_and_ridge_on_synthetic_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 20)).astype(np.float32)
    y = x[:, :2] @ np.array([[1.0, -2.0], [0.5, 3.0]]) + 0.01 * rng.standard_normal((3000, 2))
    assert r2_score(y, y) == 1.0 and abs(r2_score(y, np.broadcast_to(y.mean(0), y.shape))) < 1e-12
    out = probe_arrays(x, {"t": y}, np.repeat(np.arange(30), 100))
    assert out["t_r2"] > 0.999


def test_finger_xy_is_linear_in_the_right_basis(store):
    t = store.read_steps(DATASET, ["position", "finger_xy"])
    q = fixed_list_to_numpy(t.column("position"), 2).astype(np.float64)
    basis = np.stack([np.cos(q[:, 0]), np.sin(q[:, 0]), np.cos(q.sum(1)), np.sin(q.sum(1))], axis=1)
    out = probe_arrays(basis, {"finger_xy": fixed_list_to_numpy(t.column("finger_xy"), 2)},
                       t.column("episode").to_numpy())
    assert out["finger_xy_r2"] > 0.99


def test_state_and_random_features(store):
    state = probe(store, DATASET, make_feature_source("state"))
    random = probe(store, DATASET, RandomFeatures(dim=256))
    assert state["features"] == "state" and state["n_test"] > 0 and state["n_train"] + state["n_test"] == 60 * 200
    assert set(state["alpha"]) == {"finger_xy", "target_xy"}
    # random noise carries nothing: held-out R2 ~0 (the lead's bound: < 0.2)
    assert random["finger_xy_r2"] < 0.2 and random["target_xy_r2"] < 0.2
    # no bound on state: finger xy is not linear in the 8-d state features (module docstring); measured -0.1 here
    # (60 episodes) and 0.31 on 150 episodes, so a "> 0.9" bound would test a false premise
    assert np.isfinite(state["finger_xy_r2"]) and np.isfinite(state["target_xy_r2"])
