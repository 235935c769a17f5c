"""Bake-off cells as self-contained jobs on three executors (issue 32): local processes, submitit (its real
LocalExecutor: the same pickles, folders and result files as a Slurm job), and the Modal app's cell function run
here with .local() (the .map fan-out itself needs Modal credentials). Cells are tiny `state`-feature baselines
(2 demos x 20 steps, one seed, one epoch, one evaluation episode): plumbing, not a result."""

from __future__ import annotations

import json

import pytest

from services.common.store import Store
from vjepa_robot_client.contract import BakeoffRequest, RunStatus
from vjepa_robot_lab.experiments import bakeoff as cells_lib
from vjepa_robot_lab.experiments.executors import LocalExecutor, SubmititExecutor, make_executor
from vjepa_robot_lab.records.runs import RunStore


def _plan(tmp_path, tasks=("easy",), baselines=("state",), seeds=(0,), bakeoff_id="bakeoff-t0000001"):
    req = BakeoffRequest(baselines=list(baselines), tasks=list(tasks), seeds=list(seeds), episodes=2, steps=20,
                         image_size=16, epochs=1, eval_episodes=1, parallel_envs=1, workers=1)  # fmt: skip
    settings = cells_lib.resolve(req)
    store, runs = str(tmp_path / "store"), str(tmp_path / "runs")
    specs = cells_lib.plan_cells(bakeoff_id, settings, [], settings["baselines"], store=store, runs=runs)
    return settings, specs


def _ready(specs):
    """The demos first, as the bake-off's door makes them (one writer per dataset), then the cells."""
    s = specs[0]
    for fields in {c["dataset"]["name"]: c["dataset"] for c in specs}.values():
        cells_lib.ensure_dataset(Store(s["store"]), RunStore(s["runs"]), fields, workers=1)


def test_plan_names_datasets_by_lineage_and_counts_the_work(tmp_path):
    _, specs = _plan(tmp_path, tasks=("easy", "hard"), baselines=("state", "random"), seeds=(0, 1))
    assert [c["key"] for c in specs] == ["cell-000", "cell-001", "cell-002", "cell-003"]
    names = {c["task"]: c["dataset"]["name"] for c in specs}
    assert names["easy"] != names["hard"] and names["easy"].startswith("demos-easy-")
    _, again = _plan(tmp_path / "other", tasks=("easy",), bakeoff_id="bakeoff-t0000002")
    assert again[0]["dataset"]["name"] == names["easy"]  # the same lineage, the same name in another bake-off
    json.dumps(specs)  # self-contained and JSON: any executor can carry it
    work = cells_lib.workload(specs)
    # demos: 2 tasks x 2 x 20 frames; state/random policies render nothing live; no encoder, no windows
    assert (work["frames_to_render"], work["windows_to_encode"]) == (80, 0)
    assert work["eval_steps"] == 4 * 2 * 1 * 20 and work["bc_steps"] == 4 * 2 * 1 * 1
    enc = [
        {**specs[0], "features": "vjepa2", "encoder_id": "e1", "readout": r, "key": f"x{r}"} for r in ("mean", "flare")
    ]
    w = cells_lib.workload(enc)  # one encoder, two readouts: its demo windows once, each cell's evaluation windows
    assert w["windows_to_encode"] == 40 + 2 * 2 * 20 and w["frames_to_render"] == 40 + 2 * 2 * 20  # 2 seeds
    ready = cells_lib.workload(enc, ready_datasets={names["easy"]}, encoded={(names["easy"], "e1")})
    assert (ready["frames_to_render"], ready["windows_to_encode"]) == (80, 80)  # only live evaluation is left


def test_a_dataset_with_the_same_lineage_is_reused_not_rebuilt(tmp_path):
    _, specs = _plan(tmp_path)
    store, runs = Store(specs[0]["store"]), RunStore(specs[0]["runs"])
    first = cells_lib.ensure_dataset(store, runs, specs[0]["dataset"], workers=1)
    again = cells_lib.ensure_dataset(store, runs, specs[0]["dataset"], workers=1)
    assert first["reused"] is False and again["reused"] is True and again["created_at"] == first["created_at"]
    other = {**specs[0]["dataset"], "seed": 7}  # the same name with another lineage is refused, never overwritten
    with pytest.raises(ValueError, match="another lineage"):
        cells_lib.ensure_dataset(store, runs, other, workers=1)


def test_local_executor_runs_cells_in_two_processes(tmp_path):
    _, specs = _plan(tmp_path, baselines=("state", "random"))
    _ready(specs)
    results = dict((s["key"], r) for s, r in LocalExecutor(cell_workers=2).run(specs))
    assert set(results) == {"cell-000", "cell-001"}
    assert all(r["status"] == "succeeded" for r in results.values()), results
    pids = {r["pid"] for r in results.values()}
    import os

    assert os.getpid() not in pids  # each cell ran in a worker process
    assert all(r["dataset_reused"] for r in results.values())  # the demos the door made, not rebuilt per cell
    state = cells_lib.read_cell_state(specs[0])  # each cell wrote its own state file
    assert state["study_id"] == results["cell-000"]["study_id"] and state["attempts"] == 1


def test_submitit_local_executor_runs_cells_as_jobs(tmp_path):
    pytest.importorskip("submitit")
    _, specs = _plan(tmp_path, baselines=("state", "random"))
    _ready(specs)
    ex = SubmititExecutor(tmp_path / "submitit", cluster="local", poll_s=0.5, max_in_flight=2, token="tok-9f3e1c")
    results = dict((s["key"], r) for s, r in ex.run(specs))
    assert all(r["status"] == "succeeded" for r in results.values()), results
    assert len(list((tmp_path / "submitit").glob("*_result.pkl"))) == 2  # submitit's own job files, one per cell
    written = b"".join(p.read_bytes() for p in (tmp_path / "submitit").rglob("*") if p.is_file())
    assert b"tok-9f3e1c" not in written  # the token reaches the jobs through their environment, never a file


def test_executor_choice_and_refusals(tmp_path, monkeypatch):
    from vjepa_robot_lab.experiments.executors import ModalExecutor, check_executor

    assert isinstance(make_executor("local", cell_workers=3), LocalExecutor)
    monkeypatch.setenv("VJEPA_ROBOT_SUBMITIT_CLUSTER", "local")
    ex = make_executor("slurm", folder=tmp_path, cell_workers=2)
    assert isinstance(ex, SubmititExecutor) and ex.cluster == "local" and ex.max_in_flight == 2
    assert isinstance(make_executor("modal"), ModalExecutor)
    with pytest.raises(ValueError, match="local, modal, slurm"):
        make_executor("kubernetes")
    monkeypatch.setenv("VJEPA_ROBOT_SUBMITIT_CLUSTER", "slurm")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(ValueError, match="sbatch"):
        check_executor("slurm")


def test_a_crashed_cell_reruns_only_from_its_last_safe_point(tmp_path):
    """Two seeds: after a finished cell, seed 1's run is left `running` with no evaluation, as a kill -9 mid-run
    leaves it; run_cell again trains only that seed and keeps seed 0's training and evaluation."""
    _, specs = _plan(tmp_path, seeds=(0, 1))
    spec = specs[0]
    first = cells_lib.run_cell(spec)
    assert first["status"] == "succeeded" and first["seeds_trained"] == 2
    runs = RunStore(spec["runs"])
    keep, crash = first["run_ids"]
    kept_eval = runs.get(keep).evaluations[-1].created_at

    def crashed(r):
        r.status, r.evaluations = RunStatus.running, []

    runs.mutate(crash, crashed)
    again = cells_lib.run_cell(spec)
    assert again["status"] == "succeeded" and again["attempts"] == 2 and again["study_id"] == first["study_id"]
    assert (again["seeds_trained"], again["seeds_evaluated"], again["evaluations_kept"]) == (1, 1, 1)
    assert runs.get(keep).evaluations[-1].created_at == kept_eval and len(runs.get(keep).evaluations) == 1
    assert again["dataset_reused"] is True


@pytest.mark.filterwarnings(
    "ignore::modal.exception.DeprecationError", "ignore:The run_cell function is executing locally"
)
def test_modal_cell_function_runs_here_with_local(tmp_path, monkeypatch):
    """deploy/modal_app.py's run_cell: registered for .map (its own containers, the runs and store Volumes),
    and run here through Modal's .local() against a temporary store (no Volume to sync outside a container)."""
    from test_deploy_modal import _spec, load_modal_app

    m, seen = load_modal_app(monkeypatch)
    assert "run_cell" in m.app.registered_functions
    kw = next(k for k in seen["function"] if k.get("name") == "run_cell")
    assert kw["max_containers"] == m.CELL_WORKERS_MAX and m.RUNS_PATH in kw["volumes"] and kw["retries"] == 1
    assert _spec(m.app.registered_functions["run_cell"]).gpus is None  # CPU containers beside the GPU encoder
    _, specs = _plan(tmp_path)
    moved = {**specs[0], "store": "/nonexistent/store", "runs": "/nonexistent/runs"}  # the orchestrator's paths
    out = json.loads(m.run_cell_remote.local(json.dumps(moved), str(tmp_path / "store"), str(tmp_path / "runs")))
    assert out["status"] == "succeeded" and out["key"] == "cell-000"
    assert RunStore(tmp_path / "runs").get(out["run_ids"][0]).status.value == "succeeded"


def test_estimate_from_measured_rates_and_this_machines_history(tmp_path):
    """The estimate is the workload over the measured rates, times the median observed/modelled ratio of earlier
    cells here when there are any; a CPU-only history never yields GPU-hours."""
    _, specs = _plan(tmp_path, tasks=("easy", "hard"), baselines=("state", "random"), seeds=(0, 1))
    work = cells_lib.workload(specs)
    rates = {"render_fps": 40.0, "bc_steps_per_s": 8.0, "cpus": 2}
    raw = cells_lib.estimate(work, rates, {}, specs, None, cell_workers=2)
    want_s = work["frames_to_render"] / 40.0 + work["bc_steps"] / 8.0
    assert raw["serial_hours"] == round(want_s / 3600, 3) and raw["calibration"]["factor"] is None
    assert set(raw["per_cell_s"]) == {c["key"] for c in specs} and raw["modal"]["gpu_hours_encoding"] is None
    assert cells_lib.calibration([(1.0, 3.0), (2.0, 4.0), (1.0, 2.5), (0.0, 9.0)]) == (2.5, 3)
    assert cells_lib.calibration([]) == (None, 0)
    cal = cells_lib.estimate(work, rates, {}, specs, None, cell_workers=2, factor=2.5, factor_n=3)
    assert cal["serial_hours"] == round(2.5 * want_s / 3600, 3) and "x2.5 calibrated" in cells_lib.plan_summary(
        work, cal
    )
    enc = [{**specs[0], "features": "vjepa2", "encoder_id": "e1", "key": "x"}]
    gpu = {"windows_per_s": 100.0, "gpu": "H200", "file": "f", "finished_at": "t"}
    g = cells_lib.estimate(cells_lib.workload(enc), rates, {"e1": 10.0}, enc, gpu)
    assert g["modal"]["gpu_hours_encoding"] == round(cells_lib.workload(enc)["windows_to_encode"] / 100.0 / 3600, 3)


def test_the_plan_reads_only_a_cuda_gpu_benchmark(tmp_path):
    cpu = tmp_path / "gpu_bench_cpu.json"
    cpu.write_text(json.dumps({"device": {"kind": "cpu"}, "summary": {"vitl_windows_per_s": None}}))
    assert cells_lib.last_gpu_benchmark([cpu]) is None
    old, new = tmp_path / "gpu_bench_a.json", tmp_path / "gpu_bench_b.json"
    for path, rate, when in ((old, 300.0, "2026-12-01T00:00:00Z"), (new, 346.0, "2026-12-05T00:00:00Z")):
        path.write_text(json.dumps({"device": {"kind": "cuda", "name": "NVIDIA H200"}, "finished_at": when,
                                    "summary": {"vitl_windows_per_s": rate}}))  # fmt: skip
    got = cells_lib.last_gpu_benchmark([new, old, cpu])
    assert got["windows_per_s"] == 346.0 and got["gpu"] == "NVIDIA H200"


def test_no_time_estimate_without_measured_rates(tmp_path):
    _, specs = _plan(tmp_path)
    work = cells_lib.workload(specs)
    est = cells_lib.estimate(work, {"render_fps": None, "bc_steps_per_s": None, "error": "EGL"}, {}, specs, None)
    text = cells_lib.plan_summary(work, est)
    assert text.startswith("plan: 1 cells") and "no time estimate" in text and "EGL" in text
