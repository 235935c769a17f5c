"""The same command on the same machine gives the same numbers (issue 19, docs/reproducibility.md).

Two identical BC runs give bit-identical weights and validation losses, also when another job trains beside one of
them in the trainer's two-worker pool; and a whole small pipeline -- an expert dataset generated with 2 worker
processes or 1, embedded by a real tiny encoder service (random-init stand-in), BC on those vjepa2 features, a live
evaluation through the encoder's frame streams -- gives the same frames, embeddings, weights and returns twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import wait_until
from safetensors.torch import load_file
from test_sac import TINY

from services.common.store import Store
from services.encoder.app import create_app as create_encoder_app
from services.encoder.settings import EncoderSettings
from services.trainer import jobs
from vjepa_robot_client.contract import EvalRequest, TrainBCRequest, TrainSACRequest
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
from vjepa_robot_lab.learning.bc import CHECKPOINT_NAME
from vjepa_robot_lab.records.runs import RunStore


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / CHECKPOINT_NAME))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max |diff| {float((a[k] - b[k]).abs().max())}"


def wait_terminal(ctx, run_ids, timeout: float = 300.0) -> None:
    def ended() -> bool:
        return all(ctx.runs.get(r)["status"] in ("succeeded", "failed", "interrupted") for r in run_ids)

    wait_until(ended, timeout, f"runs {run_ids} to end", every=0.2)


def test_two_identical_bc_runs_give_identical_weights_and_val_loss(tiny_dataset, tmp_path):
    """Run 1 alone (inline); runs 2 and 3 in the service's two-worker pool at once, beside a SAC job (a job that
    seeds torch and draws from it all along): all three BC runs are bit-identical."""
    store, name, _ = tiny_dataset
    ctx = jobs.TrainerContext(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=None)
    req = TrainBCRequest(dataset=name, features="random", epochs=6, batch_size=4, seed=3)
    solo = jobs.train(ctx, jobs.InlineRunner(), req).run_id
    runner = jobs.JobRunner(workers=2)
    try:
        sac = jobs.train(ctx, runner, TrainSACRequest(**{**TINY, "total_steps": 400, "eval_every": 400})).run_id
        pair = [jobs.train(ctx, runner, req).run_id for _ in range(2)]
        wait_terminal(ctx, [sac, *pair])
    finally:
        runner.shutdown(ctx.runs)
    recs = [ctx.runs.get(r) for r in (solo, *pair)]
    assert [r["status"] for r in recs] == ["succeeded"] * 3, [r.get("error") for r in recs]
    assert (
        recs[0]["metrics"]["val_loss_curve"]
        == recs[1]["metrics"]["val_loss_curve"]
        == recs[2]["metrics"]["val_loss_curve"]
    )
    assert recs[0]["metrics"]["train_loss_curve"] == recs[1]["metrics"]["train_loss_curve"]
    for r in pair:
        assert_same_weights(weights(ctx.runs.path(solo)), weights(ctx.runs.path(r)))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, tiny_encoder):
    from conftest import run_server

    store = str(tmp_path_factory.mktemp("store"))
    app = create_encoder_app(
        EncoderSettings(store=store, device="cpu", threads=1, max_batch=16, max_wait_ms=1.0), encoder=tiny_encoder
    )
    with run_server(app, startup_timeout=60) as url:
        yield {"url": url, "store": store, "encoder_id": tiny_encoder.encoder_id}


@pytest.mark.slow
def test_small_bc_pipeline_twice_gives_identical_numbers(encoder, tmp_path):
    store = Store(encoder["store"])
    ctx = jobs.TrainerContext(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=encoder["url"])
    out = {}
    for name, workers in (("rep-a", 2), ("rep-b", 1)):  # the demo generates with 2 workers; 1 must agree
        create_dataset(
            DatasetSpec(name=name, episodes=4, steps=20, seed=0, image_size=32),
            store=store,
            workers=workers,
            progress=False,
        )
        run_id = jobs.train(
            ctx, jobs.InlineRunner(), TrainBCRequest(dataset=name, features="vjepa2", epochs=5, batch_size=16, seed=0)
        ).run_id
        jobs.evaluate_run(
            ctx, jobs.InlineRunner(), run_id, EvalRequest(episodes=2, steps=20, parallel_envs=2, gif_episodes=0)
        )
        rec = ctx.runs.get(run_id)
        ev = rec["evaluations"]
        ev = ev["0"] if isinstance(ev, dict) else ev[0]
        assert rec["status"] == "succeeded" and ev["status"] == "succeeded", (rec.get("error"), ev.get("error"))
        frames = store.read_steps(name, ["frame", "action"])
        _, _, emb = store.read_embeddings(name, encoder["encoder_id"])
        out[name] = dict(
            frames=frames.column("frame").to_pylist(),
            actions=frames.column("action").to_pylist(),
            emb=emb,
            weights=weights(ctx.runs.path(run_id)),
            val=rec["metrics"]["val_loss_curve"],
            returns=[e.return_ for e in ev["episodes"]],
        )
    a, b = out["rep-a"], out["rep-b"]
    assert a["frames"] == b["frames"] and a["actions"] == b["actions"]  # PNG bytes: the renders themselves
    assert np.array_equal(a["emb"], b["emb"])
    assert_same_weights(a["weights"], b["weights"])
    assert a["val"] == b["val"]
    assert a["returns"] == b["returns"]  # closed loop through the encoder: any float difference would show here
