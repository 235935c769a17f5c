"""Seeds as an axis: one run per seed under a study, aggregated across seeds (mean, 95% t-interval), evaluated on
the same evaluation seeds. Through the real trainer service (uvicorn on loopback, real LanceDB, real dm_control
rollouts) on state features, kept tiny: 6 demos x 40 steps, 3 epochs, 3 evaluation episodes."""

from __future__ import annotations

import math

import httpx
import pytest

from services.trainer import jobs
from services.trainer.app import TrainerSettings
from services.trainer.app import create_app as create_trainer_app
from vjepa_robot_client import TrainerClient
from vjepa_robot_client.contract import RunRecord, TrainBCRequest
from vjepa_robot_client.trainer import run_progress
from vjepa_robot_lab.experiments.studies import aggregate, mean_ci95
from vjepa_robot_lab.records.runs import RunStore


def test_mean_ci95_is_a_student_t_interval_across_seeds():
    iv = mean_ci95([0.90, 0.92, 0.88, 0.95, 0.91])
    assert iv.n == 5 and math.isclose(iv.mean, 0.912)
    sd = math.sqrt(sum((v - 0.912) ** 2 for v in iv.values) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4)
    assert math.isclose(iv.ci95[0], 0.912 - half) and math.isclose(iv.ci95[1], 0.912 + half)
    assert mean_ci95([0.5]).ci95 is None and mean_ci95([]).mean is None


def test_sac_study_aggregates_final_returns_and_only_succeeded_runs():
    study = {"study_id": "study-5ac0", "kind": "sac", "seeds": [0, 1, 2], "run_ids": ["sac-a", "sac-b", "sac-c"]}
    records = [
        {
            "run_id": "sac-a",
            "kind": "sac",
            "status": "succeeded",
            "metrics": {"final_eval": {"mean_return": 950.0}},
            "evaluations": [{"status": "succeeded", "success_rate": 1.0, "success_ci95": [0.7, 1.0], "mean_return": 9}],
        },
        {
            "run_id": "sac-b",
            "kind": "sac",
            "status": "succeeded",
            "metrics": {"final_eval": {"mean_return": 850.0}},
            "evaluations": [{"status": "failed", "error": "x"}],
        },
        {"run_id": "sac-c", "kind": "sac", "status": "running", "metrics": {"env_steps": 10}, "evaluations": []},
    ]
    agg = aggregate(study, records)
    assert agg.metric == "final_eval.mean_return" and agg.status.value == "running"
    assert agg.final.n == 2 and agg.final.mean == 900.0 and agg.final.values == [950.0, 850.0]
    assert agg.success.n == 1 and agg.success.ci95 is None  # one evaluated seed: no interval across seeds
    assert [r.eval_status.value if r.eval_status else None for r in agg.runs] == ["succeeded", "failed", None]


def test_seed_fields_expand_and_validate():
    assert TrainBCRequest(dataset="d", seed=3, n_seeds=3).run_seeds() == [3, 4, 5]
    assert TrainBCRequest(dataset="d", seeds=[7, 1]).run_seeds() == [7, 1]
    assert TrainBCRequest(dataset="d", seed=2).run_seeds() == [2] and not TrainBCRequest(dataset="d").is_study
    one = TrainBCRequest(dataset="d", seeds=[7, 1]).for_seed(1, "study-ab12")
    assert (one.seed, one.seeds, one.study_id) == (1, None, "study-ab12")
    for bad in ({"seeds": [1, 1]}, {"seeds": [0], "n_seeds": 2}, {"seeds": []}, {"n_seeds": 0}):
        with pytest.raises(ValueError):
            TrainBCRequest(dataset="d", **bad)


def test_a_crashing_study_leaves_no_run_running_or_queued(tmp_path):
    """Each seed's failure is recorded on its run; the study ends failed, nothing stays active."""
    from services.common.store import Store

    store = Store(str(tmp_path / "store"))
    store.put_dataset_meta("d", "ready", {"episodes": 1, "steps": 1, "image_size": 0})

    class Broken(jobs.TrainerContext):
        def features(self, name, task=None):
            raise RuntimeError("feature source unavailable")

    ctx = Broken(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=None)
    created = jobs.train(ctx, jobs.InlineRunner(), TrainBCRequest(dataset="d", features="state", n_seeds=3))
    records = [ctx.runs.get(r) for r in created.run_ids]
    assert [r["status"] for r in records] == ["failed"] * 3
    assert all("feature source unavailable" in r["error"] for r in records)
    study = aggregate(ctx.runs.get_study(created.study_id), records)
    assert study.status.value == "failed" and study.final.n == 0


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from _servers import serve_app

    root = tmp_path_factory.mktemp("studies")
    app = create_trainer_app(
        TrainerSettings(store=str(root / "store"), runs=str(root / "runs"), encoder_url="http://127.0.0.1:9")
    )  # state features need no encoder
    with serve_app(app) as url:
        yield url


@pytest.mark.slow
def test_bc_study_of_three_seeds_through_the_service(trainer):
    tr = TrainerClient(trainer, retries=0)
    tr.create_dataset("study-ds", episodes=6, steps=40, image_size=0, workers=1)
    assert tr.wait_dataset("study-ds", progress=False, poll_interval=0.3).status.value == "ready"
    assert [d.name for d in tr.datasets()] == ["study-ds"]

    # a single seed keeps the old answer: just a run id
    single = httpx.post(f"{trainer}/train/bc", json={"dataset": "study-ds", "features": "state", "epochs": 2})
    assert single.status_code == 202 and set(single.json()) == {"run_id", "study_id", "run_ids"}
    assert single.json()["study_id"] is None and single.json()["run_ids"] is None

    study_id = tr.train_bc("study-ds", features="state", epochs=3, batch_size=64, seeds=[0, 1, 2])
    assert study_id.startswith("study-")
    study = tr.wait_study(study_id, progress=False, poll_interval=0.3, timeout=300)
    assert study.status.value == "succeeded", [r.error for r in study.runs]
    assert study.seeds == [0, 1, 2] and study.run_id == study.run_ids[0] and len(set(study.run_ids)) == 3
    losses = []
    for row, run_id, seed in zip(study.runs, study.run_ids, [0, 1, 2]):
        run = tr.run(run_id)
        assert run.config["seed"] == seed and run.config["study_id"] == study_id and run.study_id == study_id
        kept = run.metrics["val_loss_curve"][run.metrics["selected_epoch"] - 1]  # the checkpoint BC kept
        assert row.final_metric == kept
        assert run_progress(run) == (3, 3)  # BC writes epoch/epochs
        losses.append(kept)
    assert study.metric == "val_loss" and study.final.n == 3
    assert math.isclose(study.final.mean, sum(losses) / 3)
    assert study.final.ci95[0] <= study.final.mean <= study.final.ci95[1]
    assert len(set(losses)) == 3  # the seeds really differ

    # evaluate the study: every run on the same evaluation seeds
    queued = tr.evaluate_study(study_id, episodes=3, steps=40, parallel_envs=3, gif_episodes=0)
    assert queued.eval_request["episodes"] == 3
    study = tr.wait_study(study_id, evaluated=True, progress=False, poll_interval=0.3, timeout=300)
    assert all(r.eval_status.value == "succeeded" for r in study.runs)
    seeds_used = [[e.seed for e in tr.run(r).evaluations[-1].episodes] for r in study.run_ids]
    assert seeds_used[0] == seeds_used[1] == seeds_used[2] and len(seeds_used[0]) == 3
    assert study.success.n == 3 and math.isclose(study.success.mean, sum(r.success_rate for r in study.runs) / 3)
    assert all(r.success_ci95 is not None for r in study.runs)  # each run keeps its own Wilson interval
    assert [s.study_id for s in tr.studies()] == [study_id]
    # the alias route answers the same
    again = httpx.post(f"{trainer}/eval/study/{study_id}", json={"episodes": 1, "steps": 40, "gif_episodes": 0})
    assert again.status_code == 202 and again.json()["study_id"] == study_id
    tr.wait_study(study_id, evaluated=True, progress=False, poll_interval=0.3, timeout=300)


def test_study_routes_name_the_problem(trainer):
    c = httpx.Client(base_url=trainer, timeout=30)
    r = c.get("/studies/study-00000000")
    assert r.status_code == 404 and "unknown study" in r.json()["detail"]
    r = c.get("/studies/NOT_A_STUDY")
    assert r.status_code == 400 and "invalid study id" in r.json()["detail"]
    r = c.post("/train/bc", json={"dataset": "nope", "features": "state", "seeds": [0, 1]})
    assert r.status_code == 404 and "unknown dataset" in r.json()["detail"]
    r = c.post("/train/bc", json={"dataset": "nope", "features": "state", "seeds": [0, 0]})
    assert r.status_code == 422 and "distinct" in r.json()["detail"]
    r = c.post("/train/sac", json={"features": "state", "seeds": [0], "n_seeds": 2})
    assert r.status_code == 422 and "seeds" in r.json()["detail"]
    assert c.get("/healthz").status_code == 200


def test_sdk_study_records_parse(trainer):
    record = RunRecord.model_validate(
        {
            "run_id": "bc-1",
            "kind": "bc",
            "status": "running",
            "config": {"dataset": "d", "features": "state"},
            "metrics": {"epoch": 2, "epochs": 5, "best_epoch": 1},
        }
    )
    assert run_progress(record) == (2, 5) and record.metrics["best_epoch"] == 1  # fields a newer trainer adds


@pytest.mark.slow
def test_cli_studies_through_the_service_and_in_process(trainer):
    """`train bc --n-seeds` / `--seeds` and `eval STUDY_ID`: through --trainer-url and in the CLI's own process
    (same store and runs dir, found through the trainer's /info), one path for both."""
    from typer.testing import CliRunner

    from vjepa_robot.cli import app as cli_app

    tr = TrainerClient(trainer, retries=0)
    tr.create_dataset("cli-ds", episodes=4, steps=30, image_size=0, workers=1)
    assert tr.wait_dataset("cli-ds", progress=False, poll_interval=0.3).status.value == "ready"
    info = tr.info()
    cli = CliRunner()
    out = cli.invoke(
        cli_app,
        [
            "train",
            "bc",
            "cli-ds",
            "--features",
            "state",
            "--epochs",
            "2",
            "--n-seeds",
            "2",
            "--seed",
            "5",
            "--trainer-url",
            trainer,
        ],
    )
    assert out.exit_code == 0, out.output
    assert "seed 5:" in out.output and "seed 6:" in out.output and "over 2 seed(s)" in out.output, out.output
    local = ["--store", info.store, "--runs-dir", info.runs_dir]
    out = cli.invoke(
        cli_app, ["train", "bc", "cli-ds", "--features", "state", "--epochs", "2", "--seeds", "1,3", *local]
    )
    assert out.exit_code == 0, out.output
    study_id = out.output.split("study ")[1].split()[0]
    assert tr.get_study(study_id).seeds == [1, 3]  # the service sees what the CLI ran in process
    out = cli.invoke(cli_app, ["eval", study_id, "--episodes", "2", "--steps", "10", *local])
    assert out.exit_code == 0 and "success:" in out.output, out.output
    assert all(r.eval_status.value == "succeeded" for r in tr.get_study(study_id).runs)
    out = cli.invoke(cli_app, ["train", "bc", "cli-ds", "--seeds", "1,x", *local])
    assert out.exit_code == 2 and "--seeds" in out.output
