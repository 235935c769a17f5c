"""The probes (vjepa_robot_lab/perception/probe.py): correct where the answer is known, on a real small dataset.

The 8-d state features are (cos q1, sin q1, cos q2, sin q2, to_target, velocity). `to_target` is in them, so the
linear probe must score ~1 on it; the fingertip is L1 (cos q1, sin q1) + L2 (cos(q1+q2), sin(q1+q2)), a
non-linear function of them, so only the MLP probe must score ~1 there. Random features carry nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.common.store import Store
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
from vjepa_robot_lab.perception.features import RandomFeatures, make_feature_source
from vjepa_robot_lab.perception.probe import ALPHAS, kfold_episodes, probe, probe_arrays, r2_score

DATASET = "jac-probe"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(str(tmp_path_factory.mktemp("store")))
    create_dataset(
        DatasetSpec(name=DATASET, episodes=40, steps=100, seed=1, image_size=0), store=store, workers=1, progress=False
    )
    return store


def test_kfold_is_by_episode_and_tests_every_episode_once():
    episode = np.repeat(np.arange(12), 3)
    splits = kfold_episodes(episode, 5, seed=0)
    tested = np.concatenate([te for _, te in splits])
    assert sorted(tested) == list(range(len(episode)))
    for tr, te in splits:
        assert not set(episode[tr]) & set(episode[te])


def test_ridge_on_synthetic_data_picks_an_inner_alpha():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 20)).astype(np.float32)
    y = x[:, :2] @ np.array([[1.0, -2.0], [0.5, 3.0]]) + 0.5 * rng.standard_normal((3000, 2))
    assert r2_score(y, y) == 1.0 and abs(r2_score(y, np.broadcast_to(y.mean(0), y.shape))) < 1e-12
    out = probe_arrays(x, {"t": y}, np.repeat(np.arange(30), 100), mlp=False)
    lin = out["linear"]["t"]
    assert lin["r2"] > 0.9 and len(lin["r2_folds"]) == 5 and lin["r2_sd"] >= 0
    assert ALPHAS[0] <= lin["alpha"] <= ALPHAS[-1] and isinstance(lin["alpha_at_edge"], bool)


def test_state_oracle_scores_near_one(store):
    state = probe(store, DATASET, make_feature_source("state"))
    assert state["features"] == "state" and state["folds"] == 5 and state["n_episodes"] == 40
    lin, mlp = state["linear"], state["mlp"]
    assert lin["to_target"]["r2"] > 0.99  # contained verbatim
    assert mlp["finger_xy"]["r2"] > 0.9, mlp["finger_xy"]  # non-linear in the state features (measured 0.96)
    assert mlp["to_target"]["r2"] > 0.95 and mlp["target_xy"]["r2"] > 0.9, mlp
    assert mlp["finger_xy"]["r2"] > lin["finger_xy"]["r2"] + 0.2  # what the MLP probe adds
    assert not lin["to_target"]["alpha_at_edge"]


def test_random_features_score_nothing(store):
    rnd = probe(store, DATASET, RandomFeatures(dim=64), mlp=False)
    for t in ("finger_xy", "target_xy", "to_target"):
        assert rnd["linear"][t]["r2"] < 0.2, rnd["linear"][t]


def test_few_episodes_give_finite_fold_scores():
    """A per-episode constant target over 6 episodes: each fold holds one or two targets, so its R2 is measured
    against the variance over all episodes (its own would be ~0 and the R2 a meaningless -1e12)."""
    rng = np.random.default_rng(0)
    episode = np.repeat(np.arange(6), 50)
    target = rng.uniform(-0.2, 0.2, (6, 2))[episode]
    out = probe_arrays(rng.standard_normal((300, 16)).astype(np.float32), {"target_xy": target}, episode, mlp=False)
    assert -5 < out["linear"]["target_xy"]["r2"] < 0.2 and all(np.isfinite(out["linear"]["target_xy"]["r2_folds"]))


def test_probe_scale_auto_is_global_for_a_cnn_family_and_dimension_otherwise():
    """`probe --scale auto` (the default) resolves from the encoder's /info family. The encoder-like objects here are
    stand-ins carrying only an `info.family` (what resolve_scale reads); a real lite0 probe is bench/SIGNAL_RESULTS."""
    from types import SimpleNamespace

    import pytest

    from vjepa_robot_lab.perception.features import StateFeatures
    from vjepa_robot_lab.perception.probe import resolve_scale

    cnn = SimpleNamespace(info=SimpleNamespace(family="efficientnet-lite"))
    vit = SimpleNamespace(info=SimpleNamespace(family="vjepa2"))
    wrapped = SimpleNamespace(base=cnn)  # a readout wrapping the encoder's source
    assert resolve_scale(cnn) == "global"
    assert resolve_scale(wrapped) == "global"
    assert resolve_scale(vit) == "dimension"
    assert resolve_scale(StateFeatures()) == "dimension"
    assert resolve_scale(cnn, "dimension") == "dimension"  # an explicit choice wins
    with pytest.raises(ValueError, match="not one of auto, dimension, global"):
        resolve_scale(vit, "unit")
