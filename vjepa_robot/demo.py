"""`vjepa-robot demo`: the whole BC experiment, end to end, through both services on loopback.

    encoder (tiny preset, CPU) + trainer start as real uvicorn processes; the SDK drives them:
    dataset (jacobian expert) -> encode -> BC on vjepa2 / state / random -> live evaluation beside the
    jacobian and p-controller experts and the random policy -> probes -> report.
    Work that does not depend on other work runs concurrently: BC on state / random and the baselines' evaluation
    while the encoder embeds the dataset; each evaluation as soon as its run is trained. Each stage's wall time is
    printed at the end and kept in the report's notes.

The quick preset's encoder is the `tiny` random-init preset: a stand-in that checks the plumbing, and says so in
the console and the report. `--preset findings` runs the scale of the earlier study (500 x 200 demos, pretrained
ViT-L, 100 evaluation episodes, 3 BC seeds) for a GPU machine. Results go to the CLI's default store and runs directory
(or --store / --runs-dir), so `vjepa-robot runs list` and `vjepa-robot report` see them afterwards.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from vjepa_robot.probes import print_probes, save_probes

console = Console()


@dataclass(frozen=True)
class DemoConfig:
    """The quick preset is sized for a plumbing check on 2 CPU cores: every part of the pipeline runs (render,
    dataset, encode, BC on three feature sources, live evaluation over HTTP, baselines, probes, report), on as
    few frames as shows it working. Rendering and encoding are where the time goes (measured stage by stage:
    a 40 x 200-step dataset, 8,000 windows and 20 x 200-step evaluations took 2 min 46 s, 2 min 25 s and 11 min
    (the vjepa2 evaluation alone) at load 4-16), so the quick preset renders and encodes half the dataset's frames
    and a quarter of the evaluation's, and runs what does not depend on other work concurrently."""

    encoder_preset: str = "tiny"
    episodes: int = 40  # demos (20 left BC on state at 0%: 2 validation episodes picked epoch 2 of 100)
    steps: int = 100  # control steps per episode (the earlier study used 200; the jacobian expert settles well before)
    image_size: int = 128  # rendered frame size: the tiny encoder's own crop (a 64 px render is not much cheaper)
    epochs: int = 100
    eval_episodes: int = 10  # one wave of parallel_envs
    parallel_envs: int = 10
    task: str = "easy"
    workers: int = 2
    seed: int = 0
    seeds: int = 1  # BC training seeds per condition (one run each)
    probe_folds: int = 3  # k-fold over episodes for the probes (the CLI's `probe` uses 5)
    # MLP probe training steps per fold (the CLI's `probe` uses 1500): the probes' ridge is closed-form numpy and
    # costs little; their MLPs are small-tensor torch work, which slows to a crawl when another process holds a
    # core, and made the probes the quick demo's long pole (25 of its 30 min at load 5-13). docs/results.md#demo-time
    probe_mlp_steps: int = 300


PRESETS = {
    "quick": DemoConfig(),  # one seed: the CPU time budget
    "findings": DemoConfig(
        encoder_preset="vitl",
        episodes=500,
        steps=200,
        image_size=256,
        eval_episodes=100,
        parallel_envs=16,
        seeds=3,
        probe_folds=5,
        probe_mlp_steps=1500,
    ),
}

# The demo's section headers, each within a rich rule at 80 columns (a log file's width; tests/test_newcomer.py)
HEADERS = {
    "dataset": "1. expert dataset: the jacobian expert, rendered in parallel",
    "work": "2-4. encode; BC, probes and evaluations as their inputs are ready",
    "probes": "5. probes: what the features encode (R2 on held-out episodes)",
    "report": "6. report",
}
RULE_WIDTH = 80
PROGRESS_EVERY_S = 20.0  # when output is not a terminal: one line per running job at least this often
SERVICE_START_S = 600.0  # how long the demo waits for a service to answer /healthz


def check_config(cfg: DemoConfig) -> None:
    """Refuse a bad configuration before any service starts (ValueError, one line naming the demo's option):
    every request the demo will send is built here first, with the services' own request models."""
    from pydantic import ValidationError

    from vjepa_robot.errors import invalid_input
    from vjepa_robot_client.contract import CreateDatasetRequest, EvalRequest, TrainBCRequest

    checks = [
        (
            CreateDatasetRequest,
            dict(
                name="demo",
                task=cfg.task,
                episodes=cfg.episodes,
                steps=cfg.steps,
                seed=cfg.seed,
                image_size=cfg.image_size,
                workers=cfg.workers,
            ),
            {},
        ),
        (
            TrainBCRequest,
            dict(
                dataset="demo", epochs=cfg.epochs, seed=cfg.seed, **({"n_seeds": cfg.seeds} if cfg.seeds != 1 else {})
            ),
            {"n_seeds": "--seeds"},
        ),
        (
            EvalRequest,
            dict(
                episodes=cfg.eval_episodes,
                task=cfg.task,
                steps=cfg.steps,
                parallel_envs=cfg.parallel_envs,
                image_size=cfg.image_size,
            ),
            {"episodes": "--eval-episodes", "steps": "steps (the preset's episode length)"},
        ),
    ]
    for model, fields, flags in checks:
        try:
            model(**fields)
        except ValidationError as exc:
            raise ValueError(invalid_input(exc, model=model, flags=flags)) from None
    if cfg.seeds < 1:
        raise ValueError(f"--seeds {cfg.seeds} is out of range: it must be between 1 and 32")


# the feature sources the quick demo trains, probes and evaluates: the encoder's, the oracle and the floor. Not the
# contract's whole list: `pixels` (a conv encoder learned from scratch) is its own, slower experiment
# (`--preset signal`, docs/pixels.md)
DEMO_SOURCES = ("vjepa2", "state", "random")

ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VJEPA_ROBOT_TORCH_THREADS")


def probe_pool() -> ProcessPoolExecutor:
    """One worker process for the probes, started with every thread pool at one thread (OpenBLAS, OpenMP, MKL,
    torch). Measured on the 2 loaded cores (docs/results.md#demo-time): the probes' numpy ridge took 47-50 s per
    96-d source with OpenBLAS's default two threads against 7-12 s on one, and their torch MLPs did not finish a
    source in 10 min on two threads (73 s on one): a second thread spins while another process holds the core.
    The variables must be set before the worker imports numpy, so the process starts here, with them in place."""
    import multiprocessing

    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update({k: "1" for k in ONE_THREAD})
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(int).result()  # start the worker now, while the variables are set
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


def probe_one(store_dir: str, dataset: str, features: str, encoder_url: str, seed: int, folds: int, mlp_steps: int):
    """The probes of one feature source on the demo's dataset (in the probe_pool worker)."""
    from services.common.store import Store
    from vjepa_robot_lab.perception.features import make_feature_source
    from vjepa_robot_lab.perception.probe import probe
    from vjepa_robot_lab.threads import set_torch_threads

    set_torch_threads(1)
    src = make_feature_source(features, encoder_url=encoder_url)
    try:
        result = probe(Store(store_dir), dataset, src, seed=seed, folds=folds, mlp_steps=mlp_steps)
        return {**result, "dataset": dataset, "mlp_steps": mlp_steps}
    finally:
        src.close()


def demo_config(preset: str = "quick", **overrides) -> DemoConfig:
    """The preset with the options given, checked (ValueError, one line) before anything heavy is imported."""
    from vjepa_robot.signal_demo import SIGNAL_PRESETS, signal_config

    if preset in SIGNAL_PRESETS:  # issue 27: a real pretrained encoder beside its controls (vjepa_robot/signal_demo.py)
        return signal_config(preset, **overrides)
    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}: choose one of {', '.join([*PRESETS, *SIGNAL_PRESETS])}")
    cfg = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)
    return cfg


class Services:
    """Both services as child processes on loopback (vjepa_robot/harness.py: free ports, health wait, logs in
    `logs`); stopped on exit, the trainer before the encoder it calls (SIGTERM, then SIGKILL after a grace period),
    and dying with this process if it is killed."""

    def __init__(self, store: Path, runs: Path, logs: Path, encoder_preset: str, token: str | None = None):
        from vjepa_robot.harness import ServiceGroup, cli_service, free_port

        self.store, self.runs, self.logs, self.preset, self.token = store, runs, logs, encoder_preset, token
        pe = free_port()
        self.encoder_url = f"http://127.0.0.1:{pe}"
        # a service imports torch and builds its model before it answers: minutes on a loaded 2-core machine
        # (measured: over 3 min for the tiny encoder at load ~20), so the demo waits up to 10 and says so
        encoder = cli_service(
            "encoder", "--preset", self.preset, "--store", store, port=pe, log=logs / "encoder.log",
            start_timeout=SERVICE_START_S, on_wait=self._waiting("encoder"),
        )  # fmt: skip
        trainer = cli_service(
            "trainer", "--encoder-url", self.encoder_url, "--store", store, "--runs-dir", runs,
            log=logs / "trainer.log", start_timeout=SERVICE_START_S, on_wait=self._waiting("trainer"),
        )  # fmt: skip
        self.trainer_url = trainer.url
        self.group = ServiceGroup([encoder, trainer])

    def __enter__(self) -> Services:
        self.group.start()  # up to SERVICE_START_S each, a line every PROGRESS_EVERY_S while waiting
        return self

    def _waiting(self, name: str) -> Callable[[float], None]:
        log = self.logs / f"{name}.log"
        return lambda s: console.print(f"  still starting the {name} ({fmt_s(s)}; log {log})", highlight=False)

    def __exit__(self, *exc) -> None:
        self.group.stop()


TERMINAL = ("succeeded", "failed", "interrupted", "ready", "done")  # runs/evaluations, datasets, encode jobs


@dataclass
class Job:
    """One piece of work on a service, watched until it ends: `poll()` -> (done, total, state, result)."""

    label: str
    stage: str  # dataset | encode | BC | evaluation: the stage whose time it counts towards
    poll: Callable[[], tuple]
    then: Callable[[Any], list[Job]] | None = None  # jobs to start once this one has succeeded
    started: float = 0.0
    ended: float | None = None
    result: Any = None


class Watch:
    """All of the demo's service jobs in one rich progress display: a bar per job (every one, finished or not,
    so the console is the same for every run and evaluation), a line when each ends, and each job's wall time.

    Jobs run concurrently on the services (the trainer runs two at once); a job's `then` starts the jobs that
    need its result (BC on vjepa2 after the encode, an evaluation after its training run)."""

    def __init__(self, console: Console, t0: float, clock: Callable[[], float] = time.monotonic):
        self.console, self.t0 = console, t0
        self.done: list[Job] = []
        self.lines = ProgressLines(clock=clock)
        self.beat_s = 1.0  # how often the progress thread looks at the clock (output not a terminal)

    def run(self, jobs: list[Job], poll_interval: float = 1.0) -> list[Job]:
        """Watch `jobs` (and those their `then` starts) until all have ended. On a terminal: live rich bars; in a
        log file or a pipe (where rich draws no bars until the end): a line per running job every
        PROGRESS_EVERY_S seconds, so a reader of the log sees the demo moving."""
        from contextlib import nullcontext

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        terminal = self.console.is_terminal
        bars = Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(bar_width=14),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]:<8} {task.fields[state]:<9}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            disable=not terminal,
        )
        live: dict[int, Job] = {}
        seen: dict[int, tuple] = {}  # task id -> its latest (done, total, state, unit)

        def start(job: Job) -> None:
            job.started = time.perf_counter()
            live[bars.add_task(job.label, total=None, unit="", state="queued")] = job

        lock = threading.Lock()  # the watch loop and the progress thread share `live`, `seen` and the console
        stop = threading.Event()

        def progress_lines() -> None:
            with lock:
                if terminal or not live or not self.lines.due():
                    return
                elapsed = time.perf_counter() - self.t0
                for task_id, job in live.items():
                    done, total, state, unit = seen.get(task_id, (None, None, "queued", ""))
                    line = progress_line(elapsed, job.label, done, total, unit, state)
                    self.console.print(line, highlight=False, markup=False, overflow="ellipsis", no_wrap=True)

        def beat() -> None:  # the cadence holds while a poll waits on a slow service
            while not stop.wait(self.beat_s):
                progress_lines()

        beater = threading.Thread(target=beat, name="demo-progress", daemon=True)
        with bars if terminal else nullcontext():
            with lock:
                for job in jobs:
                    start(job)
            if not terminal:
                beater.start()
            try:
                while live:
                    for task_id, job in list(live.items()):
                        done, total, state, unit, result = job.poll()  # outside the lock: it may take seconds
                        with lock:
                            bars.update(task_id, completed=done or 0, total=total or None, state=state, unit=unit)
                            seen[task_id] = (done, total, state, unit)
                            if state not in TERMINAL:
                                continue
                            job.ended, job.result = time.perf_counter(), result
                            del live[task_id]
                            self.done.append(job)
                            if state not in ("succeeded", "ready", "done"):
                                raise RuntimeError(f"{job.label} {state}: {getattr(result, 'error', result)}")
                            bars.console.print(
                                f"{job.label}: {self.describe(job)} ({fmt_s(job.ended - job.started)})",
                                highlight=False,
                                markup=False,
                            )
                        follows = job.then(result) if job.then else []  # requests to the services: unlocked
                        with lock:
                            for follow in follows:
                                start(follow)
                    progress_lines()
                    if live:
                        time.sleep(poll_interval)
            finally:
                stop.set()
        return self.done

    @staticmethod
    def describe(job: Job) -> str:
        r = job.result
        if job.stage == "dataset":
            return f"expert success {r.success_rate:.0%}, mean return {r.mean_return:.1f}"
        if job.stage == "encode":
            return f"{r.done}/{r.total} windows embedded by {r.encoder_id}"
        if job.stage == "BC":
            m = r.metrics or {}
            best = m.get("best_val_loss") if m.get("best_val_loss") is not None else m.get("val_loss")
            return (
                f"kept epoch {m.get('selected_epoch')} of {m.get('epoch')} (lowest validation MSE, {best:.2e})"
                if best is not None
                else str(r.status.value)
            )
        if job.stage == "probes":
            return f"{job.poll()[0]} feature sources probed (R2 tables below)"
        if job.stage == "evaluation":
            lo, hi = r.success_ci95 or (None, None)
            ci = f" [95% CI {lo:.0%}, {hi:.0%}]" if lo is not None else ""
            return f"success {r.success_rate:.0%}{ci} over {len(r.episodes)} episodes, mean return {r.mean_return:.1f}"
        return ""

    def spans(self) -> dict[str, float]:
        """Wall time per stage: from its first job's start to its last job's end (stages overlap)."""
        out: dict[str, tuple[float, float]] = {}
        for j in self.done:
            lo, hi = out.get(j.stage, (j.started, j.ended))
            out[j.stage] = (min(lo, j.started), max(hi, j.ended))
        return {k: hi - lo for k, (lo, hi) in out.items()}


class ProgressLines:
    """When to print the next progress line: the first call is due, then one every `every` seconds by `clock`."""

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock = every, clock
        self.last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.last is None or now - self.last >= self.every:
            self.last = now
            return True
        return False


def progress_line(elapsed: float, label: str, done, total, unit: str, state: str) -> str:
    """One job's progress for a log: `[  2:05] encode demo-easy-40x100-s0 1200/4000 windows (running)`."""
    m, sec = divmod(int(elapsed), 60)
    count = f"{done or 0}/{total} {unit}" if total else (f"{done} {unit}" if done else "")
    return " ".join(x for x in (f"[{m:3d}:{sec:02d}]", label, count, f"({state})") if x)


def fmt_s(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def run_demo(
    preset: str = "quick",
    out: Path = Path("vjepa-robot-report"),
    workdir: Path = Path("vjepa-robot-demo"),
    store: Path | None = None,
    runs_dir: Path | None = None,
    **overrides,
) -> Path:
    """Run the study; write to `store` / `runs_dir` (default: the CLI's defaults, so `vjepa-robot runs list` and
    `vjepa-robot report` find the results afterwards); service logs go to `workdir`/logs."""
    from vjepa_robot.signal_demo import SIGNAL_PRESETS, run_signal

    if preset in SIGNAL_PRESETS:  # issue 27: its own module (probes and BC rows of several encoders)
        return run_signal(preset, out=out, workdir=workdir, store=store, runs_dir=runs_dir, **overrides)
    cfg = demo_config(preset, **overrides)  # bad options are refused before the heavy imports below
    from services.common.store import default_store_uri
    from vjepa_robot_client import EncoderClient, TrainerClient
    from vjepa_robot_client.contract import EXPERTS
    from vjepa_robot_lab.records.runs import default_runs_dir
    from vjepa_robot_lab.report import is_plumbing, read_runs, save_notes, summary_lines, title, write_report

    store_dir = Path(store or default_store_uri()).resolve()
    runs_dir = Path(runs_dir or default_runs_dir(str(store_dir))).resolve()
    workdir = workdir.resolve()
    dataset = f"demo-{cfg.task}-{cfg.episodes}x{cfg.steps}-s{cfg.seed}"
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    t0 = time.perf_counter()
    times: dict[str, float] = {}
    console.rule(f"[bold]vjepa-robot demo ({preset})")
    console.print("config: " + ", ".join(f"{k}={v}" for k, v in asdict(cfg).items()), highlight=False)
    console.print(f"starting the encoder ({cfg.encoder_preset}) and trainer services ...", highlight=False)
    with Services(store_dir, runs_dir, workdir / "logs", cfg.encoder_preset) as svc:
        times["services start"] = time.perf_counter() - t0
        console.print(f"services ready in {fmt_s(times['services start'])}", highlight=False)
        enc, tr = EncoderClient(svc.encoder_url, timeout=300), TrainerClient(svc.trainer_url, timeout=60)
        info = enc.info()
        stand_in = bool(getattr(info, "random_init", False))  # the encoder says so where it loads its weights
        console.print(
            f"encoder {info.model} ({info.encoder_id}, {info.dim}-d, {info.image_size} px input, "
            f"{info.device}) at {svc.encoder_url}; trainer at {svc.trainer_url}; store {store_dir}"
        )
        if stand_in:
            console.print(
                f"[bold yellow]encoder {info.model} is a RANDOM-INIT stand-in: every vjepa2 result of this "
                "demo is a plumbing check, not a V-JEPA 2 result[/]"
            )
        watch = Watch(console, t0)

        console.rule(HEADERS["dataset"])
        try:
            ds = tr.dataset(dataset)
        except Exception:
            ds = None
        if ds is None or ds.status.value != "ready":
            tr.create_dataset(
                dataset,
                expert="jacobian",
                task=cfg.task,
                episodes=cfg.episodes,
                steps=cfg.steps,
                seed=cfg.seed,
                image_size=cfg.image_size,
                workers=cfg.workers,
                overwrite=ds is not None,
            )

        def poll_dataset():
            d = tr.dataset(dataset)
            return (
                d.episodes_done if d.status.value == "running" else d.episodes,
                cfg.episodes,
                d.status.value,
                "episodes",
                d,
            )

        watch.run([Job(f"dataset {dataset}", "dataset", poll_dataset)])

        console.rule(HEADERS["work"])
        console.print(
            "The encoder (frozen V-JEPA 2"
            + (", a random-init stand-in" if stand_in else "")
            + ") embeds the dataset while BC trains on state and random features, the probes fit and the "
            "baselines are evaluated; then BC on vjepa2; each run is evaluated once trained.",
            highlight=False,
        )
        ev = dict(
            episodes=cfg.eval_episodes,
            task=cfg.task,
            steps=cfg.steps,
            parallel_envs=cfg.parallel_envs,
            image_size=cfg.image_size,
        )
        evaluated: dict[str, str] = {}  # run id -> label

        def eval_job(run_id: str, label: str, gif: int) -> Job:
            eval_id = tr.evaluate(run_id, gif_episodes=gif, **ev).eval_id
            evaluated[run_id] = label
            return Job(f"eval {label}", "evaluation", lambda: _poll_eval(tr, run_id, eval_id))

        def baseline_job(policy: str) -> Job:
            run_id = tr.evaluate_baseline(policy, gif_episodes=0, **ev)
            evaluated[run_id] = policy
            return Job(f"eval {policy} (baseline)", "evaluation", lambda: _poll_eval(tr, run_id, None))

        def bc_jobs(f: str) -> list[Job]:
            if len(seeds) == 1:
                run_ids = [tr.train_bc(dataset, features=f, epochs=cfg.epochs, seed=seeds[0])]
            else:
                run_ids = [
                    r.run_id
                    for r in tr.get_study(tr.train_bc(dataset, features=f, epochs=cfg.epochs, seeds=seeds)).runs
                ]
            return [
                Job(
                    f"BC {f} s{seeds[k]}",
                    "BC",
                    (lambda rid=rid: _poll_run(tr, rid)),
                    then=(lambda rec, k=k, f=f: [eval_job(rec.run_id, f"BC {f} s{seeds[k]}", int(k == 0))]),
                )
                for k, rid in enumerate(run_ids)
            ]

        enc.encode_dataset(dataset)

        def poll_encode():
            st = enc.dataset_encode_status(dataset)
            return st.done, st.total, st.status, "windows", st

        # probes (what the features encode) run beside the services' jobs in a process of their own, on one
        # thread (probe_pool): state and random at once, vjepa2 once the dataset is embedded
        pool = probe_pool()
        probe_futures: dict[str, Future] = {}

        def submit_probe(f: str) -> None:
            probe_futures[f] = pool.submit(
                probe_one, str(store_dir), dataset, f, svc.encoder_url, cfg.seed, cfg.probe_folds, cfg.probe_mlp_steps
            )

        def poll_probes():
            done = [fut for fut in probe_futures.values() if fut.done()]
            failed = next((fut.exception() for fut in done if fut.exception() is not None), None)
            state = "failed" if failed else "succeeded" if len(done) == len(DEMO_SOURCES) else "running"
            return len(done), len(DEMO_SOURCES), state, "sources", failed

        def after_encode(_) -> list[Job]:
            submit_probe("vjepa2")
            return bc_jobs("vjepa2")

        for f in DEMO_SOURCES:
            if f != "vjepa2":
                submit_probe(f)
        encode = Job(f"encode {dataset}", "encode", poll_encode, then=after_encode)
        others = [j for f in DEMO_SOURCES if f != "vjepa2" for j in bc_jobs(f)]
        probes_job = Job(f"probes ({cfg.probe_folds} folds)", "probes", poll_probes)
        try:
            watch.run([encode, *others, *[baseline_job(p) for p in EXPERTS], probes_job])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

        console.rule(HEADERS["probes"])
        probes = [probe_futures[f].result() for f in DEMO_SOURCES]
        save_probes(runs_dir, probes)
        print_probes(probes, console)
        times.update(watch.spans())

        console.rule(HEADERS["report"])
        t_report = time.perf_counter()
        runs = [r for r in read_runs(runs_dir) if r.get("run_id") in evaluated]
        encoder_note = (
            f"{info.model} ({info.encoder_id}), {info.dim}-d, {info.image_size} px input, {info.dtype} "
            f"on {info.device}"
            + (": a RANDOM-INIT stand-in, so its rows are a plumbing check, not a V-JEPA 2 result" if stand_in else "")
        )
        notes = {
            "demo": f"preset {preset}: " + ", ".join(f"{k} {v}" for k, v in asdict(cfg).items()),
            "encoder": encoder_note,
            "seeds": (
                f"{len(seeds)} training seed(s) per condition ({', '.join(map(str, seeds))})"
                + (
                    "; the quick demo keeps one seed to stay within its time budget: its intervals are "
                    "over episodes, not seeds"
                    if len(seeds) == 1
                    else ""
                )
            ),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform(terse=True)}",
            "load": "load average {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min) at the end".format(*os.getloadavg()),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall time": f"{time.perf_counter() - t0:.0f} s end to end (stage times: "
            f"{stage_summary(times)}; encode, BC, probes and evaluation overlap)",
        }
        save_notes(runs_dir, notes)
        path = write_report(runs, probes, Path(out), extra_notes=notes)
        times["report"] = time.perf_counter() - t_report
    total = time.perf_counter() - t0
    console.print(
        f"stage times (wall; encode, BC, probes and evaluation run concurrently, so they overlap): "
        f"{stage_summary(times)}; total {fmt_s(total)}",
        highlight=False,
    )
    console.print(title(runs), style="bold", markup=False)
    for line in summary_lines(runs):
        console.print("  " + line, style="yellow" if "plumbing" in line else None, markup=False, highlight=False)
    console.print(f"[bold green]report written to {path}[/] in {fmt_s(total)}")
    default_store = Path(default_store_uri()).resolve() == store_dir
    flags = "" if default_store else f" --store {store_dir}"
    if runs_dir != Path(default_runs_dir(str(store_dir))).resolve():
        flags += f" --runs-dir {runs_dir}"
    console.print(
        "See the results again with:\n"
        f"  vjepa-robot runs list{flags}\n"
        f"  vjepa-robot runs show RUN_ID{flags}\n"
        f"  vjepa-robot report{flags} --out {Path(out)}\n"
        f"  vjepa-robot datasets list{'' if default_store else f' --store {store_dir}'}",
        highlight=False,
    )
    if any(is_plumbing(r) for r in runs):
        console.print(
            "[yellow]The vjepa2 rows used a random-init encoder: a plumbing check. The V-JEPA 2 result "
            "needs the pretrained checkpoint: vjepa-robot demo --preset findings (GPU).[/]"
        )
    return path


def stage_summary(times: dict[str, float]) -> str:
    order = ["services start", "dataset", "encode", "BC", "probes", "evaluation", "report"]
    return ", ".join(f"{k} {fmt_s(times[k])}" for k in order if k in times)


def _poll_run(tr, run_id: str) -> tuple:
    from vjepa_robot_client.trainer import run_progress

    rec = tr.run(run_id)
    done, total = run_progress(rec)
    return done, total, rec.status.value, "epochs", rec


def _poll_eval(tr, run_id: str, eval_id: int | None) -> tuple:
    res = tr.eval_result(run_id)
    if eval_id is not None and res.eval_id is not None and res.eval_id < eval_id:  # an older evaluation
        return 0, None, "queued", "episodes", res
    return (res.episodes_done or len(res.episodes)), res.episodes_total, res.status.value, "episodes", res
