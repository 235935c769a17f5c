"""Feature sources: offline (bulk, from the store) and online (live, per step) give the same vectors."""

from __future__ import annotations

import numpy as np

from services.trainer.datasets import DatasetSpec, create_dataset
from services.trainer.env import TimeStep, StepType, make, train_episode_seed
from services.trainer.experts import make_expert
from services.trainer.features import RandomFeatures, StateFeatures, make_feature_source


def _replay(spec: DatasetSpec, episode: int) -> list[TimeStep]:
    env, expert = make(spec.task, episode_steps=spec.steps, image_size=0), make_expert(spec.expert)
    ts = env.reset(train_episode_seed(spec.seed, episode))
    out = []
    while not ts.last():
        out.append(ts)
        ts = env.step(expert.act(env.physics, ts))
    return out


def test_offline_equals_online_for_state_and_random(tmp_store):
    spec = DatasetSpec(name="f", episodes=2, steps=300, image_size=0, seed=4)
    create_dataset(spec, tmp_store, workers=1, progress=False)
    for src in (StateFeatures(), RandomFeatures(dim=64)):
        table = src.offline(tmp_store, "f")
        assert table.x.shape == (600, src.dim) and table.x.dtype == np.float32
        for ep in range(2):
            timesteps = _replay(spec, ep)
            seed = train_episode_seed(spec.seed, ep)
            online = np.concatenate([src.online([ts], [seed]) for ts in timesteps])
            np.testing.assert_allclose(online, table.x[table.episode == ep], rtol=1e-6, atol=1e-6)


def test_random_features_ignore_the_frames_and_differ_by_step_and_episode():
    src = RandomFeatures(dim=32)
    a = src.online([TimeStep(StepType.MID, {}, step=3)], [11])
    assert np.array_equal(a, src.online([TimeStep(StepType.MID, {"position": np.ones(2)}, step=3)], [11]))
    assert not np.allclose(a, src.online([TimeStep(StepType.MID, {}, step=4)], [11]))
    assert not np.allclose(a, src.online([TimeStep(StepType.MID, {}, step=3)], [12]))


def test_unknown_feature_source_is_named():
    import pytest

    with pytest.raises(ValueError, match="unknown features 'pixels'"):
        make_feature_source("pixels")
    with pytest.raises(ValueError, match="encoder"):
        make_feature_source("vjepa2")
