"""Where a bake-off's cells run: one interface, three engines.

    ex = make_executor("local", cell_workers=2)          # N cells at once on this machine (processes)
    ex = make_executor("slurm", folder=..., cluster="slurm" | "local")   # submitit: one job per cell
    ex = make_executor("modal")                          # the deployed app's run_cell function, fanned out (.map)
    for spec, result in ex.run(specs, stop=event):       # as each cell ends, in any order
        ...

Each engine runs `bakeoff.run_cell(spec)` on a self-contained cell spec (a JSON-able dict) and yields the cell's
result dict. A cell that raises (its worker died, its job was cancelled) yields {"status": "failed" | "interrupted",
"error": ...}: the bake-off records it and resume reruns it. The token is never written into a job: a worker reads
VJEPA_ROBOT_TOKEN from its environment (local processes and submitit's jobs inherit the caller's).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXECUTORS = ("local", "modal", "slurm")


def _failed(exc: BaseException, stopped: bool) -> dict[str, Any]:
    return {"status": "interrupted" if stopped else "failed", "error": f"{type(exc).__name__}: {exc}"}


# ----------------------------------------------------------------------------------------------------------------
# local: this process (1) or N spawned processes
# ----------------------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Worker initializer: the worker gets SIGTERM when the process that started it dies (Linux prctl), so a
    killed bake-off leaves no cell running behind it; and one render thread per worker (Mesa's llvmpipe)."""
    os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker ends when its queue closes
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _run_in_worker(spec: dict) -> dict:
    from vjepa_robot_lab.experiments.bakeoff import run_cell

    return run_cell(spec)


class LocalExecutor:
    """cell_workers == 1: the cells one after another in this process (a stop event stops the one in flight
    between seeds); more: that many spawned worker processes, one cell each at a time."""

    name = "local"

    def __init__(self, cell_workers: int = 1, token: str | None = None):
        if cell_workers < 1:
            raise ValueError(f"cell_workers must be >= 1, got {cell_workers}")
        self.cell_workers, self.token = cell_workers, token

    def run(self, specs: list[dict], stop: threading.Event | None = None) -> Iterator[tuple[dict, dict]]:
        from vjepa_robot_lab.experiments.bakeoff import run_cell

        stop = stop or threading.Event()
        if self.cell_workers == 1 or len(specs) <= 1:
            for spec in specs:
                if stop.is_set():
                    yield spec, {"status": "interrupted", "error": "stopped before it started"}
                    continue
                try:
                    yield spec, run_cell(spec, token=self.token, stop=stop)
                except Exception as exc:
                    yield spec, _failed(exc, stop.is_set())
            return
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        env_token = self.token and not os.environ.get("VJEPA_ROBOT_TOKEN")
        if env_token:  # spawned workers inherit the environment, never a file
            os.environ["VJEPA_ROBOT_TOKEN"] = self.token
        pool = ProcessPoolExecutor(
            max_workers=min(self.cell_workers, len(specs)),
            mp_context=mp.get_context("spawn"),  # a forked EGL context is not safe to use
            initializer=_die_with_parent,
        )
        try:
            pending = {pool.submit(_run_in_worker, spec): spec for spec in specs}
            while pending:
                done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = pending.pop(fut)
                    try:
                        yield spec, fut.result()
                    except Exception as exc:
                        yield spec, _failed(exc, stop.is_set())
                if stop.is_set() and pending:
                    for fut in list(pending):
                        if fut.cancel():
                            yield pending.pop(fut), {"status": "interrupted", "error": "stopped before it started"}
                    _terminate(pool)  # the cells in flight
        except BaseException:  # Ctrl-C, SIGTERM turned into an exception, a crash here: no cell left running
            _terminate(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if env_token:
                os.environ.pop("VJEPA_ROBOT_TOKEN", None)


def _terminate(pool) -> None:
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


# ----------------------------------------------------------------------------------------------------------------
# slurm: submitit (the field's convention: eai-vc's hydra-submitit launcher); cluster "local" runs its LocalExecutor
# ----------------------------------------------------------------------------------------------------------------


class SubmititExecutor:
    """One submitit job per cell, in `folder` (submitit's logs and pickles; the token is not in them).

    cluster "slurm": sbatch jobs (partition, time limit, CPUs from `slurm`: {"partition", "timeout_min",
    "cpus_per_task", "mem_gb", "gpus_per_node", ...}, submitit's own parameter names); cluster "local": submitit's
    LocalExecutor (a subprocess per job on this machine: the same pickling, folders and result files as Slurm)."""

    name = "slurm"

    def __init__(
        self,
        folder: Path | str,
        cluster: str = "slurm",
        slurm: dict[str, Any] | None = None,
        poll_s: float = 1.0,
        token: str | None = None,
        max_in_flight: int | None = None,
    ):
        if cluster not in ("slurm", "local"):
            raise ValueError(f"cluster must be slurm or local, got {cluster!r}")
        self.folder, self.cluster, self.poll_s, self.token = Path(folder), cluster, poll_s, token
        self.max_in_flight = max_in_flight
        self.params = {"timeout_min": 24 * 60, "cpus_per_task": 2, **(slurm or {})}

    def _executor(self):
        import submitit

        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder=str(self.folder))
            ex.update_parameters(timeout_min=self.params["timeout_min"])
        else:
            ex = submitit.SlurmExecutor(folder=str(self.folder))
            params = {("time" if k == "timeout_min" else k): v for k, v in self.params.items()}
            ex.update_parameters(**params)
        return ex

    def run(self, specs: list[dict], stop: threading.Event | None = None) -> Iterator[tuple[dict, dict]]:
        """Submit the cells (at most `max_in_flight` jobs at once when set), yield each as its job ends."""
        stop = stop or threading.Event()
        self.folder.mkdir(parents=True, exist_ok=True)
        ex = self._executor()
        todo, running = list(specs), []  # running: [(job, spec)]
        while todo or running:
            while todo and not stop.is_set() and (not self.max_in_flight or len(running) < self.max_in_flight):
                spec = todo.pop(0)
                running.append((self._submit(ex, spec), spec))
            for job, spec in list(running):
                if not job.done():
                    continue
                running.remove((job, spec))
                try:
                    yield spec, job.result()
                except Exception as exc:
                    yield spec, _failed(exc, stop.is_set())
            if stop.is_set():
                for job, spec in running:
                    job.cancel(check=False)
                    yield spec, {"status": "interrupted", "error": "cancelled: the bake-off was stopped"}
                for spec in todo:
                    yield spec, {"status": "interrupted", "error": "stopped before it started"}
                return
            if running:
                time.sleep(self.poll_s)

    def _submit(self, ex, spec: dict):
        env_token = self.token and not os.environ.get("VJEPA_ROBOT_TOKEN")
        if env_token:  # submitit's jobs inherit the environment (sbatch exports it by default), never a file
            os.environ["VJEPA_ROBOT_TOKEN"] = self.token
        try:
            return ex.submit(_run_in_worker, spec)
        finally:
            if env_token:
                os.environ.pop("VJEPA_ROBOT_TOKEN", None)


# ----------------------------------------------------------------------------------------------------------------
# modal: the deployed app's `run_cell` function (deploy/modal_app.py), .map over the cells
# ----------------------------------------------------------------------------------------------------------------


class ModalExecutor:
    """The cells as calls of the deployed Modal function `run_cell` (deploy/modal_app.py), fanned out with .map
    (its containers autoscale beside the GPU encoder); needs Modal credentials and `modal deploy` first."""

    name = "modal"

    def __init__(self, app_name: str = "vjepa-robot", function: str = "run_cell"):
        self.app_name, self.function = app_name, function

    def run(self, specs: list[dict], stop: threading.Event | None = None) -> Iterator[tuple[dict, dict]]:
        import modal

        fn = modal.Function.from_name(self.app_name, self.function)
        texts = [json.dumps(s) for s in specs]
        by_key = {s["key"]: s for s in specs}
        for out in fn.map(texts, order_outputs=False, return_exceptions=True):
            if isinstance(out, BaseException):  # which cell is unknown: the bake-off marks the rest unfinished
                continue
            result = json.loads(out)
            yield by_key[result["key"]], result
            if stop is not None and stop.is_set():
                return


def make_executor(
    name: str,
    *,
    cell_workers: int = 1,
    folder: Path | str | None = None,
    cluster: str | None = None,
    token: str | None = None,
):
    """The executor `name` (local | modal | slurm). slurm: `cluster` "slurm" (sbatch) or "local" (submitit's
    LocalExecutor); default: $VJEPA_ROBOT_SUBMITIT_CLUSTER, else slurm."""
    if name == "local":
        return LocalExecutor(cell_workers, token=token)
    if name == "slurm":
        if folder is None:
            raise ValueError("the slurm executor needs a folder for submitit's jobs")
        cluster = cluster or os.environ.get("VJEPA_ROBOT_SUBMITIT_CLUSTER") or "slurm"
        slurm = json.loads(os.environ.get("VJEPA_ROBOT_SLURM_PARAMS") or "{}")
        # cell_workers bounds the jobs in flight (Slurm queues them itself; the local cluster would start all)
        limit = cell_workers if cell_workers > 1 or cluster == "local" else None
        return SubmititExecutor(folder, cluster=cluster, slurm=slurm, token=token, max_in_flight=limit)
    if name == "modal":
        return ModalExecutor()
    raise ValueError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")


def check_executor(name: str, cluster: str | None = None) -> None:
    """ValueError naming what is missing before anything is recorded: submitit (and sbatch for a real Slurm)."""
    if name == "slurm":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ValueError('executor slurm needs submitit: pip install "vjepa-robot[slurm]"') from None
        import shutil

        cluster = cluster or os.environ.get("VJEPA_ROBOT_SUBMITIT_CLUSTER") or "slurm"
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError(
                "executor slurm: no sbatch on this machine (no Slurm here); run the trainer on a Slurm login node, "
                "or set VJEPA_ROBOT_SUBMITIT_CLUSTER=local to run the cells as submitit jobs on this machine"
            )
    elif name == "modal":
        try:
            import modal  # noqa: F401
        except ImportError:
            raise ValueError('executor modal needs modal: pip install "vjepa-robot[modal]"') from None
