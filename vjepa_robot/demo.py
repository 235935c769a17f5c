"""`vjepa-robot demo`: the whole Phase 1 study, end to end, through both services on loopback.

    encoder (tiny preset, CPU) + trainer start as real uvicorn processes; the SDK drives them:
    dataset (jacobian expert) -> encode -> BC on vjepa2 / state / random -> live evaluation beside the
    jacobian and p-controller experts and the random policy -> probes -> report.

The quick preset's encoder is the `tiny` random-init preset: a stand-in that checks the plumbing, and says so in
the console and the report. `--preset findings` runs the findings' scale (500 x 200 demos, pretrained ViT-L,
100 evaluation episodes, 3 BC seeds) for a GPU machine. Results go to the CLI's default store and runs directory
(or --store / --runs-dir), so `vjepa-robot runs list` and `vjepa-robot report` see them afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from vjepa_robot.probes import print_probes, save_probes

console = Console()


@dataclass(frozen=True)
class DemoConfig:
    encoder_preset: str = "tiny"
    episodes: int = 40  # demos
    steps: int = 200  # control steps per episode, as in the findings
    image_size: int = 128  # rendered frame size (the tiny encoder resizes to its own crop anyway)
    epochs: int = 100
    eval_episodes: int = 20
    parallel_envs: int = 10
    task: str = "easy"
    workers: int = 2
    seed: int = 0
    seeds: int = 1  # BC training seeds per condition (one run each)


PRESETS = {
    "quick": DemoConfig(),  # one seed: the CPU time budget
    "findings": DemoConfig(encoder_preset="vitl", episodes=500, steps=200, image_size=256, eval_episodes=100,
                           parallel_envs=16, seeds=3),
}


def check_config(cfg: DemoConfig) -> None:
    """Refuse a bad configuration before any service starts (ValueError, one line naming the demo's option):
    every request the demo will send is built here first, with the services' own request models."""
    from pydantic import ValidationError

    from vjepa_robot.errors import invalid_input
    from vjepa_robot_client.contract import CreateDatasetRequest, EvalRequest, TrainBCRequest

    checks = [
        (CreateDatasetRequest, dict(name="demo", task=cfg.task, episodes=cfg.episodes, steps=cfg.steps,
                                    seed=cfg.seed, image_size=cfg.image_size, workers=cfg.workers), {}),
        (TrainBCRequest, dict(dataset="demo", epochs=cfg.epochs, seed=cfg.seed,
                              **({"n_seeds": cfg.seeds} if cfg.seeds != 1 else {})), {"n_seeds": "--seeds"}),
        (EvalRequest, dict(episodes=cfg.eval_episodes, task=cfg.task, steps=cfg.steps,
                           parallel_envs=cfg.parallel_envs, image_size=cfg.image_size),
         {"episodes": "--eval-episodes", "steps": "steps (the preset's episode length)"}),
    ]
    for model, fields, flags in checks:
        try:
            model(**fields)
        except ValidationError as exc:
            raise ValueError(invalid_input(exc, model=model, flags=flags)) from None
    if cfg.seeds < 1:
        raise ValueError(f"--seeds {cfg.seeds} is out of range: it must be between 1 and 32")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Services:
    """Both services as child processes on loopback; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, store: Path, runs: Path, logs: Path, encoder_preset: str, token: str | None = None):
        self.store, self.runs, self.logs, self.preset, self.token = store, runs, logs, encoder_preset, token
        self.procs: list[subprocess.Popen] = []
        self.encoder_url = self.trainer_url = ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "vjepa_robot.cli", "serve", name, *args], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def __enter__(self) -> "Services":
        pe, pt = free_port(), free_port()
        self.encoder_url, self.trainer_url = f"http://127.0.0.1:{pe}", f"http://127.0.0.1:{pt}"
        enc = self._spawn("encoder", ["--port", str(pe), "--preset", self.preset, "--store", str(self.store)])
        tr = self._spawn("trainer", ["--port", str(pt), "--encoder-url", self.encoder_url, "--store", str(self.store),
                                     "--runs-dir", str(self.runs)])
        wait_healthy(self.encoder_url, enc, self.logs / "encoder.log")
        wait_healthy(self.trainer_url, tr, self.logs / "trainer.log")
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service at {url} exited with code {proc.returncode}; its log ({log}):\n"
                               + log.read_text()[-3000:])
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"service at {url} not healthy after {timeout} s (log: {log})")


class Stages:
    """Wall time per demo stage (time.perf_counter), printed at the end and kept in the report's notes."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._name: str | None = None
        self._t = 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._t = name, time.perf_counter()

    def stop(self) -> None:
        if self._name is not None:
            self.times[self._name] = self.times.get(self._name, 0.0) + time.perf_counter() - self._t
            self._name = None

    def summary(self) -> str:
        return ", ".join(f"{k} {fmt_s(v)}" for k, v in self.times.items())


def fmt_s(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def run_demo(preset: str = "quick", out: Path = Path("vjepa-robot-report"), workdir: Path = Path("vjepa-robot-demo"),
             store: Path | None = None, runs_dir: Path | None = None, **overrides) -> Path:
    """Run the study; write to `store` / `runs_dir` (default: the CLI's defaults, so `vjepa-robot runs list` and
    `vjepa-robot report` find the results afterwards); service logs go to `workdir`/logs."""
    from vjepa_robot_client import EncoderClient, TrainerClient
    from vjepa_robot_client.contract import EXPERTS, FEATURE_SOURCES

    from services.common.store import Store, default_store_uri
    from services.trainer.features import make_feature_source
    from services.trainer.probe import probe
    from services.trainer.report import is_plumbing, read_runs, save_notes, summary_lines, title, write_report
    from services.trainer.runs import default_runs_dir

    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)  # before any service starts
    store_dir = Path(store or default_store_uri()).resolve()
    runs_dir = Path(runs_dir or default_runs_dir(str(store_dir))).resolve()
    workdir = workdir.resolve()
    dataset = f"demo-{cfg.task}-{cfg.episodes}x{cfg.steps}-s{cfg.seed}"
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    t0 = time.perf_counter()
    console.rule(f"[bold]vjepa-robot demo ({preset})")
    console.print(json.dumps(asdict(cfg)))
    stages = Stages()
    stages.start("services start")
    with Services(store_dir, runs_dir, workdir / "logs", cfg.encoder_preset) as svc:
        enc, tr = EncoderClient(svc.encoder_url, timeout=300), TrainerClient(svc.trainer_url, timeout=60)
        info = enc.info()
        stand_in = info.model.removeprefix("preset:") in ("tiny", "vitl-random")
        console.print(f"encoder {info.model} ({info.encoder_id}, {info.dim}-d, {info.image_size} px input, "
                      f"{info.device}) at {svc.encoder_url}; trainer at {svc.trainer_url}; store {store_dir}")
        if stand_in:
            console.print(f"[bold yellow]encoder {info.model} is a RANDOM-INIT stand-in: every vjepa2 result of this "
                          "demo is a plumbing check, not a V-JEPA 2 result[/]")

        stages.start("dataset")
        console.rule("1. expert dataset")
        try:
            ds = tr.dataset(dataset)
        except Exception:
            ds = None
        if ds is None or ds.status.value != "ready":
            tr.create_dataset(dataset, expert="jacobian", task=cfg.task, episodes=cfg.episodes, steps=cfg.steps,
                              seed=cfg.seed, image_size=cfg.image_size, workers=cfg.workers, overwrite=ds is not None)
            ds = tr.wait_dataset(dataset, poll_interval=1.0)
        if ds.status.value != "ready":
            raise RuntimeError(f"dataset generation failed: {ds.error}")
        console.print(f"{dataset}: expert success {ds.success_rate:.0%}, mean return {ds.mean_return:.1f}")

        stages.start("encode")
        console.rule("2. encode (frozen V-JEPA 2" + (", random-init stand-in" if stand_in else "") + ", batched)")
        enc.encode_dataset(dataset)
        status = enc.wait_dataset_encode(dataset, poll_interval=1.0)
        console.print(f"{status.done}/{status.total} windows embedded by {status.encoder_id}")

        stages.start("BC")
        console.rule(f"3. behaviour cloning on vjepa2 / state / random features ({len(seeds)} seed"
                     f"{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))})")
        bc_runs: dict[str, list[str]] = {}
        for f in FEATURE_SOURCES:
            if len(seeds) == 1:
                bc_runs[f] = [tr.train_bc(dataset, features=f, epochs=cfg.epochs, seed=seeds[0])]
            else:
                study = tr.wait_study(tr.train_bc(dataset, features=f, epochs=cfg.epochs, seeds=seeds),
                                      poll_interval=1.0)
                bc_runs[f] = [r.run_id for r in study.runs]
        for f, run_ids in bc_runs.items():
            for run_id in run_ids:
                rec = tr.run(run_id)  # a study was already waited for: no progress bar for a finished run
                if rec.status.value not in ("succeeded", "failed", "interrupted"):
                    rec = tr.wait(run_id, poll_interval=1.0)
                if rec.status.value != "succeeded":
                    raise RuntimeError(f"BC on {f} {rec.status.value}: {rec.error}")
                m = rec.metrics or {}
                console.print(f"BC {f} (seed {(rec.config or {}).get('seed')}): kept epoch {m.get('selected_epoch')} "
                              f"of {m.get('epoch')}, validation MSE {m.get('best_val_loss') or m.get('val_loss'):.2e}")

        stages.start("evaluation")
        console.rule("4. live evaluation (the encoder is called over HTTP every step for vjepa2)")
        ev = dict(episodes=cfg.eval_episodes, task=cfg.task, steps=cfg.steps, parallel_envs=cfg.parallel_envs,
                  image_size=cfg.image_size)
        pending = {}
        for f, run_ids in bc_runs.items():
            for k, run_id in enumerate(run_ids):
                tr.evaluate(run_id, gif_episodes=1 if k == 0 else 0, **ev)
                pending[run_id] = f"BC {f} s{seeds[k]}"
        for policy in EXPERTS:
            pending[tr.evaluate_baseline(policy, gif_episodes=0, **ev)] = policy
        for run_id, label in pending.items():
            res = tr.eval_result(run_id)  # evaluations run concurrently: a finished one needs no progress bar
            if res.status.value not in ("succeeded", "failed", "interrupted"):
                res = tr.wait_eval(run_id, poll_interval=1.0)
            if res.status.value != "succeeded":
                raise RuntimeError(f"evaluation of {label} {res.status.value}: {res.error}")

        stages.start("probes")
        console.rule("5. probes: what the features encode (linear and MLP, k-fold over episodes)")
        st = Store(str(store_dir))
        probes = []
        for f in FEATURE_SOURCES:
            src = make_feature_source(f, encoder_url=svc.encoder_url)
            probes.append({**probe(st, dataset, src, seed=cfg.seed), "dataset": dataset})
            src.close()
        save_probes(runs_dir, probes)
        print_probes(probes, console)

        stages.start("report")
        console.rule("6. report")
        runs = [r for r in read_runs(runs_dir) if r.get("run_id") in pending]
        encoder_note = (f"{info.model} ({info.encoder_id}), {info.dim}-d, {info.image_size} px input, {info.dtype} on "
                        f"{info.device}" + (": a RANDOM-INIT stand-in, so its rows are a plumbing check, not a V-JEPA 2 "
                                            "result" if stand_in else ""))
        notes = {"demo": f"preset {preset}: " + ", ".join(f"{k} {v}" for k, v in asdict(cfg).items()),
                 "encoder": encoder_note,
                 "seeds": (f"{len(seeds)} training seed(s) per condition ({', '.join(map(str, seeds))})"
                           + ("; the quick demo keeps one seed to stay within its time budget: its intervals are "
                              "over episodes, not seeds" if len(seeds) == 1 else "")),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform(terse=True)}",
                 "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "wall time": f"{time.perf_counter() - t0:.0f} s end to end"}
        save_notes(runs_dir, notes)
        path = write_report(runs, probes, Path(out), extra_notes=notes)
    stages.stop()
    console.print(f"stage times: {stages.summary()}", highlight=False)
    console.print(title(runs), style="bold", markup=False)
    for line in summary_lines(runs):
        console.print("  " + line, style="yellow" if "plumbing" in line else None, markup=False, highlight=False)
    console.print(f"[bold green]report written to {path}[/] in {time.perf_counter() - t0:.0f} s")
    default_store = Path(default_store_uri()).resolve() == store_dir
    flags = "" if default_store else f" --store {store_dir}"
    if runs_dir != Path(default_runs_dir(str(store_dir))).resolve():
        flags += f" --runs-dir {runs_dir}"
    console.print("See the results again with:\n"
                  f"  vjepa-robot runs list{flags}\n"
                  f"  vjepa-robot runs show RUN_ID{flags}\n"
                  f"  vjepa-robot report{flags} --out {Path(out)}\n"
                  f"  vjepa-robot datasets list{'' if default_store else f' --store {store_dir}'}", highlight=False)
    if any(is_plumbing(r) for r in runs):
        console.print("[yellow]The vjepa2 rows used a random-init encoder: a plumbing check. The V-JEPA 2 result "
                      "needs the pretrained checkpoint: vjepa-robot demo --preset findings (GPU).[/]")
    return path
