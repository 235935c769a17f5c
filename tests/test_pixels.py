"""features=pixels (vjepa_robot_lab/perception/pixels.py): the learning-from-scratch control of issue 27.

A tiny real dataset (jacobian expert, 2 episodes, 24 px frames rendered by dm_control), trained through the CLI's
local mode and the job layer, so the run record is the one a user gets; evaluated live from rendered frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from services.common.store import Store
from vjepa_robot_client.contract import PIXEL_FRAMES, TrainBCRequest, TrainSACRequest
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
from vjepa_robot_lab.perception.pixels import (
    PixelBCPolicy,
    PixelEncoder,
    PixelFeatures,
    load_pixel_policy,
    random_shift,
    stack_index,
)

SIZE = 24
DATASET = "px-tiny"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    store = Store(str(root / "store"))
    create_dataset(
        DatasetSpec(name=DATASET, episodes=2, steps=20, seed=0, image_size=SIZE), store=store, workers=1, progress=False
    )
    return root / "store", root / "runs"


def _cli(*args):
    from vjepa_robot import cli

    return CliRunner().invoke(cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(dirs):
    store, runs = dirs
    res = _cli("train", "bc", DATASET, "--features", "pixels", "--epochs", 3, "--store", store, "--runs-dir", runs)
    assert res.exit_code == 0, res.output
    from vjepa_robot_lab.records.runs import RunStore

    (record,) = RunStore(runs).list()
    return record


def test_random_shift_shifts_within_the_pad():
    x = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    gen = torch.Generator().manual_seed(0)
    outs = [random_shift(x, pad=4, generator=gen) for _ in range(8)]
    assert all(o.shape == x.shape for o in outs)
    assert any(not torch.equal(o, x) for o in outs)  # it moves the image
    # every output is a crop of the replicate-padded input at some offset in [0, 8]: find it
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="replicate")
    for o in outs:
        for n in range(2):
            hits = [
                (i, j) for i in range(9) for j in range(9) if torch.equal(o[n], padded[n, :, i : i + 12, j : j + 12])
            ]
            assert hits, "not a shifted crop of the padded image"
    # every stacked frame (channel) of a sample shifts by the same offset
    o = random_shift(x[:, :1].repeat(1, 9, 1, 1), generator=gen)
    assert torch.equal(o[:, :3], o[:, 3:6])


def test_encoder_is_drqv2_shape():
    enc = PixelEncoder(frames=3, image_size=84)
    convs = [m for m in enc.convnet if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (9, 32, (3, 3), (2, 2)),
        (32, 32, (3, 3), (1, 1)),
        (32, 32, (3, 3), (1, 1)),
        (32, 32, (3, 3), (1, 1)),
    ]
    assert enc.repr_dim == 32 * 35 * 35  # DrQ-v2's repr_dim at its 84 px frames
    assert enc(torch.zeros(2, 9, 84, 84)).shape == (2, enc.repr_dim)


def test_head_is_the_findings_mlp():
    from vjepa_robot_lab.learning.bc import findings_mlp

    ours = PixelBCPolicy(3, 32).net
    theirs = findings_mlp(ours[0].in_features, [256, 64], 2)
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_stack_index_follows_the_window_rule():
    episode = np.array([0, 0, 0, 0, 1, 1])
    step = np.array([0, 1, 2, 3, 0, 1])
    idx = stack_index(episode, step, 3)
    assert idx.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [4, 4, 4], [4, 4, 5]]


def test_run_record_names_pixels(trained):
    assert trained.status.value == "succeeded", trained.error
    assert trained.config["features"] == "pixels"
    assert trained.lineage.features.value == "pixels"
    assert trained.lineage.image_size == SIZE  # evaluation renders at the dataset's frame size
    assert trained.metrics.epoch == 3


def test_save_load_round_trip(dirs, trained):
    _, runs = dirs
    policy = load_pixel_policy(runs / trained.run_id)
    assert (policy.frames, policy.image_size) == (PIXEL_FRAMES, SIZE)
    assert policy.lineage["features"]["features"] == "pixels"
    x = np.random.default_rng(0).integers(0, 256, (4, PIXEL_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    a = policy(x)
    assert a.shape == (4, 2) and np.all(np.abs(a) <= 1)
    # the same weights as a freshly built network loaded from the file: same actions
    fresh = PixelBCPolicy(PIXEL_FRAMES, SIZE)
    from safetensors.torch import load_file

    fresh.load_state_dict(load_file(str(policy.path)))
    from vjepa_robot_lab.perception.pixels import to_channels

    np.testing.assert_allclose(fresh.eval()(to_channels(x)).detach().numpy(), a, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="frame stacks of shape"):
        policy(x[:, :, :16, :16])  # the wrong frame size is refused, naming the right one


def test_evaluation_runs_live(dirs, trained):
    store, runs = dirs
    res = _cli(
        "eval", trained.run_id, "--episodes", 2, "--steps", 20, "--parallel-envs", 2, "--store", store,
        "--runs-dir", runs,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    from vjepa_robot_lab.records.runs import RunStore

    (ev,) = RunStore(runs).get(trained.run_id).evaluations
    assert ev.status.value == "succeeded" and len(ev.episodes) == 2
    assert ev.image_size == SIZE  # rendered live at the run's own frame size


def test_online_hands_the_last_frames_through():
    from vjepa_robot_lab.envs.env import make

    env = make("easy", seed=0, episode_steps=10, image_size=SIZE)
    ts = env.reset()
    src = PixelFeatures()
    x0 = src.online([ts], [0])
    assert x0.shape == (1, PIXEL_FRAMES, SIZE, SIZE, 3) and x0.dtype == np.uint8
    ts = env.step(np.zeros(2))
    x1 = src.online([ts], [0])
    assert np.array_equal(x1[0, -1], ts.frame) and np.array_equal(x1[0, -2], x0[0, -1])


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="readout must be 'mean'"):
        TrainBCRequest(dataset="d", features="pixels", readout="attentive")
    with pytest.raises(ValueError, match="BC only"):
        TrainSACRequest(features="pixels")
    assert json.loads(TrainBCRequest(dataset="d", features="pixels").model_dump_json())["features"] == "pixels"


def test_pixels_have_no_fixed_representation_to_probe(tmp_path):
    """`probe --features pixels` is refused in one line (frames are read by an encoder learned with the policy),
    not a numpy shape error from deep inside the ridge; and the quick demo trains, probes and evaluates only the
    fixed sources (pixels is the signal preset's experiment)."""
    from conftest import write_steps_dataset

    from services.common.store import Store
    from vjepa_robot.demo import DEMO_SOURCES
    from vjepa_robot_lab.perception.features import make_feature_source
    from vjepa_robot_lab.perception.probe import probe

    store = Store(str(tmp_path / "store"))
    write_steps_dataset(store, "px", episodes=4, steps=10, image_size=16)
    with pytest.raises(ValueError, match="no fixed representation to probe"):
        probe(store, "px", make_feature_source("pixels"), folds=2, mlp=False)
    assert DEMO_SOURCES == ("vjepa2", "state", "random")
