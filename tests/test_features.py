"""Feature sources: offline (bulk, from the store) and online (live, per step) give the same vectors."""

from __future__ import annotations

import numpy as np

from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
from vjepa_robot_lab.envs.env import StepType, TimeStep, make, train_episode_seed
from vjepa_robot_lab.perception.features import RandomFeatures, StateFeatures, make_feature_source
from vjepa_robot_lab.policies.experts import make_expert


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

    with pytest.raises(ValueError, match="unknown features 'depth'"):
        make_feature_source("depth")
    with pytest.raises(ValueError, match="encoder"):
        make_feature_source("vjepa2")


def test_vjepa2_asks_the_encoder_only_while_the_store_says_incomplete(tmp_path):
    """ensure_encoded uses the store's one completeness rule; the SDK's encode-and-wait does the rest.

    The SDK client is replaced by a recorder (no encoder service here); the store, its tables and the rule are real.
    """
    from conftest import write_steps_dataset

    from services.common.store import EmbeddingLineage, Store
    from vjepa_robot_lab.perception.features import VJEPA2Features

    class Recorder:
        def __init__(self):
            self.calls = []

        def encode_dataset_and_wait(self, dataset, progress=False):
            self.calls.append(dataset)

    store = Store(str(tmp_path / "store"))
    write_steps_dataset(store, "d", episodes=2, steps=4, image_size=16)
    src = object.__new__(VJEPA2Features)  # skip __init__: it would call the encoder's /info
    src.client, src.encoder_id = Recorder(), "enc-a"
    lineage = EmbeddingLineage(encoder_id="enc-a", model="stand-in", preprocessing="none", dim=3)
    store.append_embeddings("d", 0, np.arange(4), np.zeros((4, 3), np.float32), lineage)
    src.ensure_encoded(store, "d")
    assert src.client.calls == ["d"]  # one episode of two embedded: incomplete
    store.append_embeddings("d", 1, np.arange(4), np.zeros((4, 3), np.float32), lineage)
    src.ensure_encoded(store, "d")
    assert src.client.calls == ["d"]  # complete: the encoder is not asked again
