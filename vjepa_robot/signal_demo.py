"""`vjepa-robot demo --preset signal`: the demo that says something real (issue 27), on a CPU.

The quick preset is a plumbing check (a random-init stand-in encoder). This preset puts a REAL pretrained encoder
beside its matched control and the field's baselines, and measures whether the harness tells them apart:

- `lite0`: EfficientNet-Lite0 with ImageNet weights (an ImageNet-supervised image CNN, frozen; a real pretrained
  encoder, not V-JEPA 2), served by the encoder service (`serve encoder --preset lite0`);
- `lite0-random`: the same network with seeded random weights (a stand-in: the matched control);
- `pixels`: DrQ-v2's conv encoder trained from scratch with the policy (the learning-from-scratch control);
- `state` (the oracle) and `random` (the floor).

Two tables, every number with a 95% interval:

1. **Probes** (what the frozen features hold): ridge R2 of the fingertip xy, the target xy and `to_target` from
   lite0's mean embedding and its 2 x 2 and 4 x 4 grids, and the same for lite0-random; k-fold over episodes; the
   interval is a Student-t interval over the folds' R2 (k-1 degrees of freedom). The ridge centres its inputs and
   scales them by one common std (probe.Ridge scale="global": per-dimension standardising amplifies a CNN's
   near-dead channels).
2. **BC** (what a policy does with them): success rate of BC on each source, lite0 and lite0-random read with
   `mean` and `attentive` (an attentive pooler over the g x g grid), 3 seeds each, evaluated live; the interval is
   Wilson's over all evaluation episodes of the 3 seeds pooled, the per-seed rates beside it.

Everything runs through the project's own parts: encoder services on loopback (one per model, as the bake-off
starts them), the dataset generator, the trainer's job layer in this process (run records, studies, live
evaluation through the frame streams), the probe code. Results go to `<out>/signal.json` and `<out>/signal.md`
as each stage finishes (a killed run keeps what it measured). Sizes and why: docs/pixels.md, bench/SIGNAL_RESULTS.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console

console = Console()


@dataclass(frozen=True)
class SignalConfig:
    """Sized for this project's shared 2-core CPU (bench/SIGNAL_RESULTS.md measures each piece)."""

    encoders: tuple[str, ...] = ("lite0", "lite0-random")
    fusion: str = "last"  # an image family's window fusion: the newest frame (the probe targets are the current step's)
    # BC: the dataset state-BC needs (>= 80% success measured at this size), rendered small enough to encode
    episodes: int = 200  # state BC: 77/70% at 100 x 50, 83/80/90% at 150 x 50, 100% at 200 x 50 (eval seed 0)
    steps: int = 50
    image_size: int = 64  # lite0's map is 2 x 2 at 64 px (stride 32): the attentive readout reads that grid
    dataset_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 100  # state, random, lite0 (the findings' recipe)
    pixel_epochs: int = 2  # the conv encoder costs ~100x an MLP step: 13-42 samples/s at 64 px on the loaded box
    attentive_grid: int = 2
    eval_episodes: int = 20  # per seed: 60 episodes per row
    eval_seed: int = 1000  # report episodes (seeded 1e9 + 1000 + k); configurations were chosen on eval seed 0
    parallel_envs: int = 10
    # probes: their own dataset at 128 px, where lite0's map is 4 x 4 (grids 2 and 4)
    # distinct targets matter: 12 x 25 gave every readout R2 < 0.1 (seed 100); at 40 x 10 lite0's and lite0-random's
    # fingertip intervals on the 2 x 2 grid overlapped by 0.04 (seed 0), at 80 x 10 they separate (seeds 1 and 0)
    probe_episodes: int = 80
    probe_steps: int = 10
    probe_image_size: int = 128
    probe_grid_sizes: tuple[int, ...] = (2, 4)
    probe_folds: int = 5
    rows: tuple[str, ...] = field(
        default=(
            "state",
            "random",
            "pixels",
            "lite0:mean",
            "lite0-random:mean",
            "lite0:attentive",
            "lite0-random:attentive",
        )
    )
    workers: int = 1


SIGNAL_PRESETS = {"signal": SignalConfig()}


def signal_config(preset: str = "signal", **overrides) -> SignalConfig:
    """The preset with the options given (the demo command's --seeds is a count); ValueError naming a bad one."""
    if isinstance(overrides.get("seeds"), int):
        if overrides["seeds"] < 1:
            raise ValueError(f"--seeds {overrides['seeds']} is out of range: it must be at least 1")
        overrides["seeds"] = tuple(range(overrides["seeds"]))
    for key in ("episodes", "eval_episodes", "epochs"):
        if overrides.get(key) is not None and overrides[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} {overrides[key]} is out of range: it must be at least 1")
    return replace(SIGNAL_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------


def t_ci95(values: list[float]) -> tuple[float, float | None, float | None]:
    """(mean, low, high): Student-t 95% interval of the mean (n-1 degrees of freedom); None bounds below 2 values."""
    from vjepa_robot_lab.evaluation.stats import t_interval

    return t_interval(list(values))


def overlap(a: tuple, b: tuple) -> bool:
    """Whether two (low, high) intervals overlap."""
    return not (a[1] < b[0] or b[1] < a[0])


# ----------------------------------------------------------------------------------------------------------------
# Probes
# ----------------------------------------------------------------------------------------------------------------


def probe_rows(store, dataset: str, source, label: str, grid_sizes, folds: int) -> list[dict]:
    """Ridge R2 (k-fold by episode) of the probe targets from `source`'s mean embedding and each g x g grid
    (flattened, the linear readout of the grid): one row per readout with {target: {r2, ci95, folds}}."""
    import numpy as np

    from services.common.store import fixed_list_to_numpy
    from vjepa_robot_lab.perception.probe import TARGETS, probe_arrays

    steps = store.read_steps(dataset, list(TARGETS))
    targets = {t: fixed_list_to_numpy(steps.column(t), 2) for t in TARGETS}
    ep = steps.column("episode").to_numpy()
    tables = [("mean", source.offline(store, dataset))]
    tables += [(f"grid {g}x{g}", source.offline_grid(store, dataset, g)) for g in grid_sizes]
    rows = []
    for readout, t in tables:
        if not np.array_equal(t.episode, ep):
            raise ValueError(f"features of {dataset!r} do not cover its steps: re-encode it")
        t0 = time.perf_counter()
        x = np.asarray(t.x, np.float32).reshape(len(t), -1)
        # scale="global": centred, one std for all inputs; per-dimension standardising blows up lite0's near-dead
        # channels (probe.Ridge)
        res = probe_arrays(x, targets, ep, seed=0, folds=folds, mlp=False, scale="global")
        row = {"encoder": label, "readout": readout, "dim": int(x.shape[1]), "rows": int(len(x))}
        for name in TARGETS:
            f = res["linear"][name]["r2_folds"]
            m, lo, hi = t_ci95(f)
            row[name] = {"r2": m, "ci95": [lo, hi], "folds": f, "alpha": res["linear"][name]["alpha"]}
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# BC rows
# ----------------------------------------------------------------------------------------------------------------


def bc_row(ctx, dataset: str, features: str, readout: str, cfg: SignalConfig, label: str) -> dict:
    """One BC study (cfg.seeds) on `features` read with `readout`, each run evaluated live on the same report
    episodes, through the trainer's job layer in this process."""
    from services.trainer import jobs
    from vjepa_robot_client.contract import EvalRequest, TrainBCRequest
    from vjepa_robot_lab.evaluation.stats import wilson_ci95

    t0 = time.perf_counter()
    epochs = cfg.pixel_epochs if features == "pixels" else cfg.epochs
    req = TrainBCRequest(
        dataset=dataset,
        features=features,
        readout=readout,
        grid_size=cfg.attentive_grid,
        epochs=epochs,
        seeds=list(cfg.seeds),
    )
    created = jobs.train(ctx, jobs.InlineRunner(), req)
    t_train = time.perf_counter() - t0
    ev = EvalRequest(
        episodes=cfg.eval_episodes,
        steps=cfg.steps,
        seed=cfg.eval_seed,
        parallel_envs=cfg.parallel_envs,
        gif_episodes=0,
    )
    jobs.evaluate_study(ctx, jobs.InlineRunner(), created.study_id, ev)
    per_seed, returns, wins, n = [], [], 0, 0
    runs = []
    for run_id in created.run_ids:
        rec = ctx.runs.get(run_id)
        e = rec.evaluations[-1] if rec.evaluations else None
        if e is None or e.status.value != "succeeded":
            runs.append({"run_id": run_id, "status": rec.status.value, "error": rec.error})
            continue
        ok = [bool(x.success) for x in e.episodes]
        wins, n = wins + sum(ok), n + len(ok)
        per_seed.append(e.success_rate)
        returns.append(e.mean_return)
        lin = rec.lineage
        runs.append(
            {
                "run_id": run_id,
                "seed": rec.config.get("seed"),
                "success_rate": e.success_rate,
                "mean_return": e.mean_return,
                "selected_epoch": getattr(rec.metrics, "selected_epoch", None),
                "encoder_id": getattr(lin, "encoder_id", None),
            }
        )
    lo, hi = wilson_ci95(wins, n) if n else (None, None)
    return {
        "row": label,
        "features": features,
        "readout": readout,
        "study_id": created.study_id,
        "epochs": epochs,
        "success": wins / n if n else None,
        "ci95": [lo, hi],
        "episodes": n,
        "per_seed": per_seed,
        "mean_return": t_ci95(returns) if returns else None,
        "runs": runs,
        "train_s": round(t_train, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


# ----------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------

ROW_NOTES = {
    "state": "oracle: joint cos/sin, to_target, velocity",
    "random": "floor: noise, no information",
    "pixels": "learning from scratch: DrQ-v2 conv, 3 stacked frames, random shift",
    "lite0": "EfficientNet-Lite0, ImageNet-supervised, frozen: a real pretrained image CNN (not V-JEPA 2)",
    "lite0-random": "the same network, random init: stand-in (the matched control)",
}


def _f(v, nd=2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def render_markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        "# vjepa-robot demo --preset signal",
        "",
        f"Machine: {result.get('machine', '')}. Started {result.get('started', '')}; "
        f"wall so far {result.get('wall_s', 0) / 60:.1f} min.",
        "",
        f"## Probes: ridge R2 on held-out episodes (95% t-interval over {cfg['probe_folds']} folds by episode)",
        "",
        f"Dataset `{result.get('probe_dataset')}`: {cfg['probe_episodes']} jacobian-expert episodes x "
        f"{cfg['probe_steps']} steps at {cfg['probe_image_size']} px; features of each encoder at "
        f"fusion `{cfg['fusion']}`; the grid rows are the linear readout of the flattened g x g grid.",
        "",
        "| encoder | readout | dim | fingertip R2 | target R2 | to_target R2 |",
        "|---|---|---|---|---|---|",
    ]
    for r in result.get("probes", []):
        cells = [
            f"{_f(r[t]['r2'])} [{_f(r[t]['ci95'][0])}, {_f(r[t]['ci95'][1])}]"
            for t in ("finger_xy", "target_xy", "to_target")
        ]
        enc = result.get("encoders", {}).get(r["encoder"], {})
        tag = {True: " (random-init stand-in)", False: " (pretrained)"}.get(enc.get("random_init"), "")
        lines.append(f"| {r['encoder']}{tag} | {r['readout']} | {r['dim']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "lite0 is EfficientNet-Lite0 with ImageNet weights: an ImageNet-supervised image CNN, frozen (a real "
        "pretrained encoder, not V-JEPA 2); lite0-random is the same network with random weights.",
        "",
        "## BC: live success rate (95% t-interval across seeds; Wilson over the pooled episodes beside it)",
        "",
        f"Dataset `{result.get('dataset')}`: {cfg['episodes']} jacobian-expert demos x {cfg['steps']} steps at "
        f"{cfg['image_size']} px; seeds {', '.join(map(str, cfg['seeds']))}; {cfg['eval_episodes']} evaluation "
        f"episodes per seed (eval seed {cfg['eval_seed']}), {cfg['steps']} steps; attentive reads the "
        f"{cfg['attentive_grid']} x {cfg['attentive_grid']} grid.",
        "",
        "| row | success | 95% CI across seeds | pooled episodes: Wilson 95% CI | per seed | "
        "mean return [95% CI across seeds] | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {row: i for i, row in enumerate(cfg["rows"])}
    for r in sorted(result.get("bc", []), key=lambda r: order.get(r["row"], len(order))):
        base = r["row"].split(":")[0]
        ret = r.get("mean_return")
        ret_s = (
            f"{ret[0]:.1f}" + (f" [{ret[1]:.1f}, {ret[2]:.1f}]" if ret and ret[1] is not None else "") if ret else "n/a"
        )
        seeds = ", ".join(f"{s:.2f}" for s in r["per_seed"])
        _, lo, hi = t_ci95(list(r["per_seed"])) if r["per_seed"] else (None, None, None)
        across = f"[{_f(max(0.0, lo))}, {_f(min(1.0, hi))}]" if lo is not None else "n/a (one seed)"
        lines.append(
            f"| {r['row']} | {_f(r['success'])} | {across} | [{_f(r['ci95'][0])}, {_f(r['ci95'][1])}] | {seeds} | "
            f"{ret_s} | {ROW_NOTES.get(base, '')} |"
        )
    lines += ["", "Stages (wall time, 1-minute load average at the end):"]
    for s in result.get("stages", []):
        lines.append(f"- {s['stage']}: {s['wall_s'] / 60:.1f} min (load {s['load'][0]:.1f})")
    seen = {(s["stage"], s["wall_s"]) for s in result.get("stages", [])}
    for p in result.get("parts", []):
        lines.append(f"- kept from {p['file']} (started {p['started']}):")
        for s in p["stages"]:
            if (s["stage"], s["wall_s"]) not in seen:  # a piece may have copied another's stages
                seen.add((s["stage"], s["wall_s"]))
                lines.append(f"  - {s['stage']}: {s['wall_s'] / 60:.1f} min (load {s['load'][0]:.1f})")
    if result.get("errors"):
        lines += ["", "Errors:", *[f"- {e}" for e in result["errors"]]]
    return "\n".join(lines) + "\n"


def _start_encoder(model: str, store: str, fusion: str | None, logs: Path, timeout: float = 600.0):
    """One `serve encoder --preset MODEL` on a free loopback port (a child process, as the bake-off starts them);
    (url, process) once /healthz answers. (Not the CLI's helper: the CLI imports this module.)"""
    import os
    import socket
    import subprocess
    import sys

    import httpx

    from services.common.procs import with_pdeathsig

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logs.mkdir(parents=True, exist_ok=True)
    args = ["serve", "encoder", "--port", str(port), "--preset", model, "--store", store]
    if fusion:
        args += ["--fusion", fusion]
    log = logs / "encoder.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(  # dies with this process, however it ends (a kill skips every `finally`)
            with_pdeathsig([sys.executable, "-m", "vjepa_robot.cli", *args]),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    console.print(f"encoder {model}: {url} (log {log})")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"encoder {model} exited with {proc.returncode}: see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    proc.kill()
    raise RuntimeError(f"encoder {model} did not answer within {timeout:.0f} s: see {log}")


def _stop(procs) -> None:
    import subprocess

    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def _ensure_dataset(st, spec, workers: int) -> None:
    """Create the dataset unless a finished one of that name is in the store (an interrupted one is resumed)."""
    from services.common.store import DatasetNotFound
    from vjepa_robot_lab.data.datasets import create_dataset

    try:
        status = st.get_dataset_meta(spec.name).get("status")
    except DatasetNotFound:
        status = None
    if status == "ready":
        return
    create_dataset(spec, store=st, workers=workers, progress=False, resume=status is not None)


# what a kept row must share with this run to be reused: a probe row the probe settings, a BC row the BC settings
_SAME_PROBE = ("fusion", "dataset_seed", "probe_episodes", "probe_steps", "probe_image_size", "probe_grid_sizes",
               "probe_folds")  # fmt: skip
_SAME_BC = ("fusion", "episodes", "steps", "image_size", "dataset_seed", "seeds", "epochs", "pixel_epochs",
            "attentive_grid", "eval_episodes", "eval_seed")  # fmt: skip


def _kept(out: Path, cfg: SignalConfig) -> dict:
    """The rows of earlier runs into the same `out` with the same settings (a run killed part way, or pieces run
    side by side with `part`, each into its own signal.<part>.json): kept and not measured again. Files with
    other settings are ignored."""
    now = json.loads(json.dumps(asdict(cfg)))
    kept: dict = {"probes": [], "bc": [], "stages": [], "earlier": []}
    for path in sorted(out.glob("signal*.json")):
        old = json.loads(path.read_text())
        same_probe = all(old.get("config", {}).get(k) == now.get(k) for k in _SAME_PROBE)
        same_bc = all(old.get("config", {}).get(k) == now.get(k) for k in _SAME_BC)
        if not (same_probe or same_bc):
            continue
        if same_probe:
            have_p = {p["encoder"] for p in kept["probes"]}
            kept["probes"] += [p for p in old.get("probes", []) if p["encoder"] not in have_p]
        if same_bc:
            have_b = {r["row"] for r in kept["bc"]}
            kept["bc"] += [r for r in old.get("bc", []) if r["row"] not in have_b]
        kept["stages"].append({"file": path.name, "started": old.get("started"), "stages": old.get("stages", [])})
        kept["earlier"] += old.get("earlier", []) + [f"{path.name}: started {old.get('started')}"]
        for key in ("encoders", "dataset", "probe_dataset"):
            if old.get(key):
                kept.setdefault(key, {} if key == "encoders" else old[key])
                if key == "encoders":
                    kept[key].update(old[key])
    return kept if kept["earlier"] else {}


def _save(out: Path, result: dict, t0: float, part: str | None = None) -> None:
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    name = f"signal.{part}" if part else "signal"
    tmp = out / f"{name}.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(out / f"{name}.json")  # atomic: a kill never leaves half a file
    (out / f"{name}.md").write_text(render_markdown(result))


def run_signal(
    preset: str = "signal",
    out: Path = Path("vjepa-robot-signal"),
    workdir: Path = Path("vjepa-robot-demo"),
    store: Path | None = None,
    runs_dir: Path | None = None,
    part: str | None = None,
    **overrides,
) -> Path:
    """Run the signal preset; results to `out`/signal.json and signal.md as each stage ends. `part` (pieces run
    side by side into one `out`, e.g. rows without an encoder while the encoders' rows run) writes
    signal.<part>.json instead; a later run without `part` gathers every piece with the same settings."""
    import os
    import platform
    from datetime import datetime, timezone

    from services.common.store import Store, default_store_uri
    from services.trainer.jobs import TrainerContext
    from vjepa_robot_lab.data.datasets import DatasetSpec
    from vjepa_robot_lab.perception.features import VJEPA2Features
    from vjepa_robot_lab.records.runs import RunStore, default_runs_dir
    from vjepa_robot_lab.threads import set_torch_threads

    cfg = signal_config(preset, **overrides)
    set_torch_threads()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    store_dir = Path(store or default_store_uri()).resolve()
    st = Store(str(store_dir))
    runs = RunStore(Path(runs_dir or default_runs_dir(str(store_dir))).resolve())
    t0 = time.perf_counter()
    kept = _kept(out, cfg)
    result: dict = {
        "config": asdict(cfg),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start",
        "probes": [p for p in kept.get("probes", [])],
        "bc": [r for r in kept.get("bc", []) if r.get("success") is not None],
        "stages": [],  # this run's
        # the stages of the other pieces gathered here (never this run's own file: its stages are measured again)
        "parts": [p for p in kept.get("stages", []) if p["file"] != (f"signal.{part}.json" if part else "signal.json")],
        "errors": [],
        "earlier": kept.get("earlier", []),
        "encoders": dict(kept.get("encoders", {})),
    }
    probed = {p["encoder"] for p in result["probes"]}
    done_rows = {r["row"] for r in result["bc"]}
    if kept:
        console.print(f"keeping {len(probed)} probed encoders and BC rows {sorted(done_rows)} from {out}/signal.json")

    def stage(name: str, s0: float) -> None:
        result["stages"].append({"stage": name, "wall_s": round(time.perf_counter() - s0, 1), "load": os.getloadavg()})
        _save(out, result, t0, part)
        console.print(f"[green]{name}[/] {(time.perf_counter() - s0) / 60:.1f} min (load {os.getloadavg()[0]:.1f})")

    console.rule(f"[bold]vjepa-robot demo ({preset})")
    console.print(json.dumps(asdict(cfg)))
    s0 = time.perf_counter()
    urls, procs = [], []
    try:
        for k, model in enumerate(cfg.encoders):  # one service each; the fusion applies to the image family only
            fusion = cfg.fusion if model.startswith("lite0") else None
            u, p = _start_encoder(model, str(store_dir), fusion, Path(workdir) / "logs" / f"{k}-{model}")
            urls, procs = [*urls, u], [*procs, p]
        stage("encoders start", s0)
        encoders = dict(zip(cfg.encoders, urls))
        for name, url in encoders.items():
            f = VJEPA2Features(url)
            result["encoders"][name] = {"url": url, **f.lineage(), "random_init": f.info.random_init}
            f.close()

        # -- the probe dataset and the probes --------------------------------------------------------------
        pname = f"signal-probe-{cfg.probe_episodes}x{cfg.probe_steps}-{cfg.probe_image_size}px-s{cfg.dataset_seed}"
        result["probe_dataset"] = pname
        s0 = time.perf_counter()
        todo = [n for n in encoders if n not in probed]
        if todo:
            spec = DatasetSpec(
                name=pname,
                episodes=cfg.probe_episodes,
                steps=cfg.probe_steps,
                seed=cfg.dataset_seed,
                image_size=cfg.probe_image_size,
            )
            _ensure_dataset(st, spec, cfg.workers)
            stage("probe dataset", s0)
        for name, url in encoders.items():
            if name in probed:
                continue
            s0 = time.perf_counter()
            src = VJEPA2Features(url, timeout=3600)
            try:
                result["probes"] += probe_rows(st, pname, src, name, cfg.probe_grid_sizes, cfg.probe_folds)
            except Exception as exc:  # recorded; the next stage goes on
                result["errors"].append(f"probe {name}: {type(exc).__name__}: {exc}")
            finally:
                src.close()
            stage(f"probe {name}", s0)

        # -- the BC dataset and the BC rows ----------------------------------------------------------------
        dname = f"signal-{cfg.episodes}x{cfg.steps}-{cfg.image_size}px-s{cfg.dataset_seed}"
        result["dataset"] = dname
        s0 = time.perf_counter()
        spec = DatasetSpec(
            name=dname, episodes=cfg.episodes, steps=cfg.steps, seed=cfg.dataset_seed, image_size=cfg.image_size
        )
        if [r for r in cfg.rows if r not in done_rows]:  # a probes-only piece renders no BC dataset
            _ensure_dataset(st, spec, cfg.workers)
            stage("BC dataset", s0)
        for row in cfg.rows:
            if row in done_rows:
                continue
            model, _, readout = row.partition(":")
            if model not in encoders and model not in ("state", "random", "pixels"):
                result["errors"].append(f"BC {row}: no encoder {model!r} started (encoders: {list(encoders)})")
                continue
            features = "vjepa2" if model in encoders else model
            ctx = TrainerContext(store=st, runs=runs, encoder_url=encoders.get(model))
            s0 = time.perf_counter()
            try:
                result["bc"].append(bc_row(ctx, dname, features, readout or "mean", cfg, row))
            except Exception as exc:
                result["errors"].append(f"BC {row}: {type(exc).__name__}: {exc}")
            stage(f"BC {row}", s0)
    finally:
        _stop(procs)
        _save(out, result, t0, part)
    console.print(render_markdown(result))
    return out / "signal.md"


__all__ = ["SignalConfig", "SIGNAL_PRESETS", "run_signal", "render_markdown", "probe_rows", "bc_row"]
