"""`vjepa-robot demo`: the whole Phase 1 study, end to end, through both services on loopback.

    encoder (tiny preset, CPU) + trainer start as real uvicorn processes; the SDK drives them:
    dataset (jacobian expert) -> encode -> BC on vjepa2 / state / random -> live evaluation beside the
    jacobian and p-controller experts and the random policy -> linear probe -> report.

`--preset findings` runs the findings' scale (500 x 200 demos, ViT-L, 100 evaluation episodes) for a GPU machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console

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


PRESETS = {
    "quick": DemoConfig(),
    "findings": DemoConfig(encoder_preset="vitl", episodes=500, steps=200, image_size=256, eval_episodes=100,
                           parallel_envs=16),
}


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


def run_demo(preset: str = "quick", out: Path = Path("vjepa-robot-report"), workdir: Path = Path("vjepa-robot-demo"),
             **overrides) -> Path:
    from vjepa_robot_client import EncoderClient, TrainerClient

    from services.common.store import Store
    from services.trainer.features import make_feature_source
    from services.trainer.probe import probe
    from services.trainer.report import write_report
    from services.trainer.runs import RunStore

    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    workdir = workdir.resolve()
    store_dir, runs_dir = workdir / "store", workdir / "runs"
    dataset = f"demo-{cfg.task}-{cfg.episodes}x{cfg.steps}-s{cfg.seed}"
    t0 = time.perf_counter()
    console.rule(f"[bold]vjepa-robot demo ({preset})")
    console.print(json.dumps(asdict(cfg)))
    with Services(store_dir, runs_dir, workdir / "logs", cfg.encoder_preset) as svc:
        enc, tr = EncoderClient(svc.encoder_url, timeout=300), TrainerClient(svc.trainer_url, timeout=60)
        info = enc.info()
        console.print(f"encoder {info.model} ({info.encoder_id}, {info.dim}-d, {info.device}) at {svc.encoder_url}; "
                      f"trainer at {svc.trainer_url}; store {store_dir}")

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

        console.rule("2. encode (frozen V-JEPA 2, batched)")
        status = enc.encode_dataset_and_wait(dataset, poll_interval=1.0)
        console.print(f"{status.done}/{status.total} windows embedded by {status.encoder_id}")

        console.rule("3. behaviour cloning on vjepa2 / state / random features")
        bc_runs = {f: tr.train_bc(dataset, features=f, epochs=cfg.epochs, seed=cfg.seed) for f in
                   ("vjepa2", "state", "random")}
        for f, run_id in bc_runs.items():
            rec = tr.wait(run_id, poll_interval=1.0)
            if rec.status.value != "succeeded":
                raise RuntimeError(f"BC on {f} {rec.status.value}: {rec.error}")
            console.print(f"BC {f}: val loss {rec.metrics.get('val_loss')}")

        console.rule("4. live evaluation (the encoder is called over HTTP every step for vjepa2)")
        ev = dict(episodes=cfg.eval_episodes, task=cfg.task, steps=cfg.steps, parallel_envs=cfg.parallel_envs,
                  image_size=cfg.image_size)
        pending = {run_id: f"BC {f}" for f, run_id in bc_runs.items()}
        for run_id in bc_runs.values():
            tr.evaluate(run_id, gif_episodes=2, **ev)
        for policy in ("jacobian", "p-controller", "random"):
            pending[tr.evaluate_baseline(policy, gif_episodes=0, **ev)] = policy
        for run_id, label in pending.items():
            res = tr.wait_eval(run_id, poll_interval=1.0)
            if res.status.value != "succeeded":
                raise RuntimeError(f"evaluation of {label} {res.status.value}: {res.error}")
            console.print(f"{label:>14}: success {res.success_rate:.0%} {res.success_ci95}, return {res.mean_return:.1f}"
                          f", {res.steps_per_second:.0f} steps/s")

        console.rule("5. linear probe: what the features encode")
        store = Store(str(store_dir))
        probes = []
        for f in ("vjepa2", "state", "random"):
            src = make_feature_source(f, encoder_url=svc.encoder_url)
            probes.append({**probe(store, dataset, src, seed=cfg.seed), "dataset": dataset})
            src.close()
            console.print(probes[-1])
        save_probes(runs_dir, probes)

        console.rule("6. report")
        runs = RunStore(runs_dir).list()
        path = write_report(runs, probes, Path(out),
                            extra_notes={"demo": asdict(cfg), "encoder": info.model_dump(),
                                         "wall_s": round(time.perf_counter() - t0, 1)})
    console.print(f"[bold green]report written to {path}[/] in {time.perf_counter() - t0:.0f} s")
    return path


def save_probes(runs_dir: Path, probes: list[dict]) -> None:
    d = Path(runs_dir) / "probes"
    d.mkdir(parents=True, exist_ok=True)
    for p in probes:
        (d / f"{p['dataset']}__{p['features']}.json").write_text(json.dumps(p, indent=1))


def load_probes(runs_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(runs_dir) / "probes").glob("*.json"))]
