"""The bake-off: encoders x readouts x tasks x seeds as BC studies, one markdown table and one figure.

    record = start(ctx, runner, BakeoffRequest(encoders=[url_a, url_b], tasks=["easy"], seeds=[0, 1, 2]))
    record = get(ctx, runner, record.bakeoff_id)         # BakeoffRecord: cells, table, figure path

One job (`bakeoff:<id>` in the trainer's JobRunner, so it holds its lock like every other job) does, in order:
1. per task, the demos: a dataset `<id>-<task>` made by the task's expert (request.experts, jacobian for
   reacher) -- one dataset per task, shared by every encoder, so every cell clones the same demonstrations;
2. per (task, encoder, readout), a BC study over the seeds (jobs.train, the studies machinery: one run per seed)
   on that encoder's features -- the encoder at its URL embeds the frames into the shared store on first use --
   then the study evaluated live on the same evaluation episodes for every seed (jobs.evaluate_study);
3. the cell's score: the mean evaluation return across seeds with a 95% Student-t interval (studies.mean_ci95),
   the success rate beside it where the task defines one.

Each encoder is one service (GET /info says its model, family and pinned weights); a cell trains with a
TrainerContext whose encoder_url is that service, and every run's lineage records the weights
(jobs.encoder_lineage), so every row of the table names the exact weights. A random-init encoder is a stand-in:
its rows and its points in the figure say so, and so do the table's title and the figure's when every encoder is.

Files: <runs_dir>/bakeoffs/<id>/bakeoff.json (the record), bakeoff.md (the table), bakeoff.png (the figure).
A failed cell is recorded with its error and the bake-off goes on; a crash or stop leaves no cell `running`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from services.trainer import jobs
from vjepa_robot_client.contract import (
    BakeoffCell,
    BakeoffRecord,
    BakeoffRequest,
    CreateDatasetRequest,
    EvalRequest,
    RunStatus,
    TrainBCRequest,
    validate_run_id,
)
from vjepa_robot_lab.experiments.protocols import preset
from vjepa_robot_lab.experiments.studies import aggregate, mean_ci95
from vjepa_robot_lab.records.runs import _atomic_write_json

log = logging.getLogger("vjepa_robot.trainer")

TABLE_MD, FIGURE_PNG, RECORD_JSON = "bakeoff.md", "bakeoff.png", "bakeoff.json"
STAND_IN = "stand-in (random-init weights): plumbing check, not a result of the model"
DEFAULT_SEEDS = [0, 1, 2]
_LOCK = threading.Lock()  # record writes (the job) and reads that repair a dead job's record (routes)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _reacher(task: str) -> bool:
    """Reacher's tasks have a scripted expert (jacobian): their default demonstrator."""
    from vjepa_robot_lab.envs.tasks import task_spec

    return task_spec(task).is_reacher


def _has_success(task: str) -> bool:
    from vjepa_robot_lab.envs.tasks import has_success

    return has_success(task)


# ----------------------------------------------------------------------------------------------------------------
# Settings: the request, its protocol, this tool's defaults
# ----------------------------------------------------------------------------------------------------------------


def _protocol_tasks(names: list[str]) -> tuple[list[str], list[str]]:
    """A protocol's tasks as this trainer names them (tasks.canonical_task: reacher-easy is `easy`), and those
    this trainer does not have."""
    from vjepa_robot_lab.envs.tasks import canonical_task

    have, missing = [], []
    for name in names:
        try:
            have.append(canonical_task(name))
        except ValueError:
            missing.append(name)
    return have, missing


def resolve(req: BakeoffRequest) -> dict[str, Any]:
    """Every setting the cells run with: the request's own values, else its protocol's, else this tool's defaults
    (CreateDatasetRequest / TrainBCRequest / EvalRequest). Raises ValueError naming what is missing."""
    p = preset(req.protocol) if req.protocol is not None else {}
    ds_defaults, ev_defaults = CreateDatasetRequest.model_fields, EvalRequest.model_fields
    ds, ev = p.get("dataset", {}), p.get("eval", {})

    def pick(value, from_protocol, default):
        return value if value is not None else from_protocol if from_protocol is not None else default

    tasks = [t.value for t in req.tasks]
    missing: list[str] = []
    if p and "tasks" not in req.model_fields_set:
        tasks, missing = _protocol_tasks(p["tasks"])
    extra = sorted(set(req.experts) - set(tasks))
    if extra:
        raise ValueError(f"experts names task(s) {extra} that are not in the tasks {tasks}")
    experts = {t: req.experts.get(t) or ("jacobian" if _reacher(t) else None) for t in tasks}
    lacking = [t for t, e in experts.items() if e is None]
    if lacking:
        raise ValueError(
            f"task(s) {', '.join(lacking)} need a demonstrator: send experts, e.g. "
            f'{{"experts": {{"{lacking[0]}": "run:RUN_ID"}}}} (a trained policy\'s run); only reacher has a scripted '
            "expert (jacobian)"
        )
    from vjepa_robot_lab.envs.tasks import task_spec

    # episode length per task: the request's, else the protocol's, else the task's own (tasks.py: reacher 200,
    # the other suite tasks 1000 simulator steps)
    steps = {t: pick(req.steps, ds.get("steps"), task_spec(t).episode_steps) for t in tasks}
    bc = dict(p.get("bc", {}))
    bc.pop("readout", None)  # the bake-off's readouts are an axis of their own
    for field in ("epochs", "batch_size"):
        if getattr(req, field) is not None:
            bc[field] = getattr(req, field)
    return {
        "protocol": req.protocol.value if req.protocol is not None else None,
        "tasks": tasks,
        "tasks_not_here": missing,
        "experts": experts,
        "readouts": [r.value for r in req.readouts],
        "seeds": list(req.seeds or p.get("seeds") or DEFAULT_SEEDS),
        "steps": steps,
        "dataset": {
            "episodes": pick(req.episodes, ds.get("episodes"), ds_defaults["episodes"].default),
            "image_size": pick(req.image_size, ds.get("image_size"), ds_defaults["image_size"].default),
            "seed": pick(req.dataset_seed, ds.get("seed"), ds_defaults["seed"].default),
            "workers": req.workers or ds_defaults["workers"].default,
        },
        "bc": {**bc, "grid_size": req.grid_size},
        "eval": {
            "episodes": pick(req.eval_episodes, ev.get("episodes"), ev_defaults["episodes"].default),
            "seed": pick(req.eval_seed, ev.get("seed"), ev_defaults["seed"].default),
            "parallel_envs": req.parallel_envs or ev_defaults["parallel_envs"].default,
        },
        "score": "mean evaluation return across seeds (95% t-interval)",
    }


# ----------------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------------


def root(ctx: jobs.TrainerContext) -> Path:
    return Path(ctx.runs.root) / "bakeoffs"


def _dir(ctx, bakeoff_id: str) -> Path:
    return root(ctx) / bakeoff_id


def save(ctx, record: BakeoffRecord) -> None:
    record.updated_at = _now()
    if record.status in (RunStatus.queued, RunStatus.running):  # who runs it: a restarted trainer spares a live one
        from services.common.owner import OWNER

        record.owner = dict(OWNER)
    path = _dir(ctx, record.bakeoff_id)
    path.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        _atomic_write_json(path / RECORD_JSON, record.model_dump(mode="json"))


def load(ctx, bakeoff_id: str) -> BakeoffRecord:
    try:
        validate_run_id(bakeoff_id)
    except ValueError as exc:
        raise jobs.Refused(400, str(exc).replace("run id", "bake-off id")) from None
    path = _dir(ctx, bakeoff_id) / RECORD_JSON
    if not path.is_file():
        raise jobs.Refused(404, f"no bake-off {bakeoff_id!r}: GET /bakeoff lists them")
    return BakeoffRecord.model_validate_json(path.read_text())


def get(ctx, runner, bakeoff_id: str) -> BakeoffRecord:
    """The record; one a dead trainer left queued/running is marked interrupted (its job is not active here)."""
    from services.common.owner import owned_by_live_process

    record = load(ctx, bakeoff_id)
    active = record.status in (RunStatus.queued, RunStatus.running)
    if active and f"bakeoff:{bakeoff_id}" not in runner.active() and not owned_by_live_process(record):
        _end_unfinished(record, "interrupted", "the trainer stopped during this bake-off: start it again")
        save(ctx, record)
    return record


def list_all(ctx, runner) -> list[BakeoffRecord]:
    base = root(ctx)
    ids = sorted(p.name for p in base.iterdir() if (p / RECORD_JSON).is_file()) if base.is_dir() else []
    return [get(ctx, runner, i) for i in ids]


def _end_unfinished(record: BakeoffRecord, status: str, error: str) -> None:
    for cell in record.cells:
        if cell.status in (RunStatus.queued, RunStatus.running):
            cell.status, cell.error = RunStatus(status), cell.error or error
    record.status, record.error = RunStatus(status), record.error or error


# ----------------------------------------------------------------------------------------------------------------
# Starting and running
# ----------------------------------------------------------------------------------------------------------------


def _encoder_infos(ctx, urls: list[str]) -> list:
    """Each encoder's GET /info, before anything is recorded: 422 naming an encoder that does not answer, or two
    URLs serving the same encoder (their rows would be one model twice)."""
    from vjepa_robot_client import EncoderClient

    infos = []
    for url in urls:
        try:
            with EncoderClient(url, token=ctx.token, retries=1, timeout=30) as client:  # refuse fast
                infos.append(client.info())
        except Exception as exc:
            raise jobs.Refused(
                422, f"encoder {url} did not answer GET /info ({type(exc).__name__}: {exc}): start it first"
            ) from None
    seen: dict[str, str] = {}
    for url, info in zip(urls, infos):
        if info.encoder_id in seen:
            raise jobs.Refused(422, f"encoders {seen[info.encoder_id]} and {url} serve the same encoder {info.model}")
        seen[info.encoder_id] = url
    return infos


class _Stop(threading.Event):
    """The bake-off's stop event: the trainer's shutdown sets it, and it stops the runs of the study in flight."""

    def __init__(self, ctx):
        super().__init__()
        self.ctx, self.run_ids = ctx, []

    def set(self) -> None:
        super().set()
        for run_id in list(self.run_ids):
            self.ctx.runs.stop_event(run_id).set()


def start(
    ctx, runner, req: BakeoffRequest, progress: bool = False, announce: Callable[[str], None] | None = None
) -> BakeoffRecord:
    """Validate (422 naming the problem), record the bake-off `queued` with one cell per (task, encoder, readout),
    and submit its job. With jobs.InlineRunner (the CLI) the whole bake-off runs before this returns; `announce`
    gets one line per dataset and cell as it ends."""
    try:
        settings = resolve(req)
    except ValueError as exc:
        raise jobs.Refused(422, str(exc)) from None
    bakeoff_id = f"bakeoff-{secrets.token_hex(4)}"
    for task in settings["tasks"]:  # every expert can demonstrate its task, before anything is recorded
        try:
            dataset_spec(ctx, settings, f"{bakeoff_id}-{task}", task)
        except ValueError as exc:
            raise jobs.Refused(getattr(exc, "status", 422), f"task {task}: {exc}") from None
    infos = _encoder_infos(ctx, req.encoders)
    record = BakeoffRecord(
        bakeoff_id=bakeoff_id,
        status=RunStatus.queued,
        protocol=settings["protocol"],
        settings=settings,
        request=req.model_dump(mode="json"),
        datasets={t: f"{bakeoff_id}-{t}" for t in settings["tasks"]},
        cells=[
            BakeoffCell(
                encoder_url=url,
                encoder_id=info.encoder_id,
                model=info.model,
                family=info.family,
                weights=info.weights,
                random_init=info.random_init,
                stand_in=bool(info.random_init),
                task=task,
                readout=readout,
                dataset=f"{bakeoff_id}-{task}",
            )
            for task in settings["tasks"]
            for url, info in zip(req.encoders, infos)
            for readout in settings["readouts"]
        ],
        created_at=_now(),
    )
    save(ctx, record)
    stop = _Stop(ctx)

    def on_error(exc: BaseException) -> None:
        status = "interrupted" if isinstance(exc, jobs.JobStopped) else "failed"
        _end_unfinished(record, status, f"{type(exc).__name__}: {exc}")
        save(ctx, record)
        write_outputs(ctx, record)

    runner.submit(f"bakeoff:{bakeoff_id}", lambda: run(ctx, record, stop, progress, announce), on_error, stop=stop)
    return load(ctx, bakeoff_id)


def dataset_spec(ctx, settings: dict, name: str, task: str):
    """The task's demos as (DatasetSpec, run expert source or None), its expert resolved (a run expert's action
    repeat set: datasets.py); ValueError / ExpertRefused when the expert cannot demonstrate the task."""
    from vjepa_robot_lab.data.datasets import DatasetSpec, resolve_expert

    d = settings["dataset"]
    spec = DatasetSpec(
        name=name,
        expert=settings["experts"][task],
        task=task,
        episodes=d["episodes"],
        steps=settings["steps"][task],
        seed=d["seed"],
        image_size=d["image_size"],
    )
    return resolve_expert(spec, ctx.runs)


def _make_dataset(ctx, record: BakeoffRecord, task: str, stop: threading.Event) -> dict:
    from vjepa_robot_lab.data.datasets import create_dataset

    spec, source = dataset_spec(ctx, record.settings, record.datasets[task], task)
    d = record.settings["dataset"]
    meta = create_dataset(spec, ctx.store, workers=d["workers"], progress=False, stop=stop, expert_source=source)
    if meta.get("status") != "ready":
        raise RuntimeError(f"dataset {spec.name} ended {meta.get('status')}: {meta.get('error')}")
    return meta


def _run_cell(ctx, record: BakeoffRecord, cell: BakeoffCell, stop: _Stop, progress: bool) -> None:
    """One cell: a BC study over the seeds on this encoder's features, then evaluated; its score across seeds."""
    s = record.settings
    cctx = dataclasses.replace(ctx, encoder_url=cell.encoder_url)  # this encoder's features, the same store/runs
    inline = jobs.InlineRunner()
    req = TrainBCRequest(
        dataset=cell.dataset,
        features="vjepa2",
        readout=cell.readout,
        seeds=s["seeds"],
        **({"protocol": s["protocol"]} if s["protocol"] else {}),
        **s["bc"],
    )
    # a seed that fails is recorded on its run and the study goes on (jobs.train); what raises here is the study's
    # own failure (bad input: Refused; a stop: JobStopped), which ends this cell
    created = jobs.train(cctx, _Inline(inline, stop, cctx), req, progress=progress)
    cell.study_id = created.study_id
    study = cctx.runs.get_study(cell.study_id)
    cell.run_ids = list(study.run_ids)
    save(ctx, record)
    if stop.is_set():
        raise jobs.JobStopped("the trainer was stopped during this bake-off")
    ev = EvalRequest(task=cell.task, steps=s["steps"][cell.task], gif_episodes=0, **s["eval"])
    try:
        jobs.evaluate_study(cctx, _Inline(inline, stop, cctx), cell.study_id, ev)
    except jobs.Refused as exc:  # no run of the study succeeded: the cell fails with the runs' errors
        cell.error = exc.detail
    except Exception as exc:
        if stop.is_set():
            raise jobs.JobStopped("the trainer was stopped during this bake-off") from None
        cell.error = f"{type(exc).__name__}: {exc}"
    agg = aggregate(study, [cctx.runs.get(r) for r in study.run_ids])
    returns = [r.mean_return for r in agg.runs if r.mean_return is not None]
    cell.score = mean_ci95(returns) if returns else None
    cell.success = agg.success if _has_success(cell.task) else None
    failed = [r for r in agg.runs if r.status != RunStatus.succeeded or r.eval_status != RunStatus.succeeded]
    if failed and not cell.error:
        cell.error = f"{len(failed)} of {len(agg.runs)} seed(s) did not finish: " + "; ".join(
            f"{r.run_id} {r.status.value}/{r.eval_status.value if r.eval_status else '-'}"
            + (f" ({r.error})" if r.error else "")
            for r in failed
        )
    cell.status = RunStatus.succeeded if returns and not failed else RunStatus.failed


class _Inline:
    """jobs.InlineRunner that tells the bake-off's stop event which runs are in flight (so a shutdown stops them)."""

    def __init__(self, inner: jobs.InlineRunner, stop: _Stop, ctx):
        self.inner, self.stop, self.ctx = inner, stop, ctx

    def submit(self, key: str, fn, on_error, stop: threading.Event | None = None) -> None:
        kind, _, rest = key.partition(":")
        if kind in ("study", "studyeval"):
            self.stop.run_ids = list(self.ctx.runs.get_study(rest).run_ids)
        elif kind in ("run", "eval"):
            self.stop.run_ids = [rest.split(":")[0]]
        if self.stop.is_set():
            self.stop.set()  # stopped before this job began: its runs end interrupted at once
        self.inner.submit(key, fn, on_error)

    def active(self) -> list[str]:
        return []


def run(
    ctx, record: BakeoffRecord, stop: _Stop, progress: bool = False, announce: Callable[[str], None] | None = None
) -> BakeoffRecord:
    """The bake-off's job: datasets, then every cell in order; the table and figure at the end (and on failure)."""
    record.status = RunStatus.running
    save(ctx, record)
    for task in record.settings["tasks"]:
        cells = [c for c in record.cells if c.task == task]
        try:
            meta = _make_dataset(ctx, record, task, stop)
        except Exception as exc:
            if stop.is_set():
                raise jobs.JobStopped("the trainer was stopped during this bake-off") from None
            log.error("bake-off %s: dataset of task %s failed: %s", record.bakeoff_id, task, exc)
            for c in cells:
                c.status, c.error = RunStatus.failed, f"dataset {record.datasets[task]}: {type(exc).__name__}: {exc}"
            save(ctx, record)
            continue
        record.demo_returns[task] = meta.get("mean_return")
        save(ctx, record)
        if announce:
            announce(
                f"dataset {record.datasets[task]} ready ({task}, expert {record.settings['experts'][task]}, "
                f"demo return {_fmt(meta.get('mean_return'))})"
            )
        for cell in cells:
            if stop.is_set():
                raise jobs.JobStopped("the trainer was stopped during this bake-off")
            cell.status = RunStatus.running
            save(ctx, record)
            try:
                _run_cell(ctx, record, cell, stop, progress)
            except jobs.JobStopped:
                raise
            except Exception as exc:
                if stop.is_set():
                    raise jobs.JobStopped("the trainer was stopped during this bake-off") from None
                if isinstance(exc, jobs.Refused):
                    exc = RuntimeError(exc.detail)  # one cell's failure is that cell's result; the bake-off goes on
                log.error(
                    "bake-off %s: cell %s/%s/%s failed: %s", record.bakeoff_id, task, cell.model, cell.readout, exc
                )
                cell.status, cell.error = RunStatus.failed, f"{type(exc).__name__}: {exc}"
            save(ctx, record)
            if announce:
                done = sum(c.status not in (RunStatus.queued, RunStatus.running) for c in record.cells)
                announce(
                    f"cell {done}/{len(record.cells)}: {task} {encoder_label(cell)} {cell.readout}: "
                    f"{cell.status.value}, return {_interval(cell.score)}" + (f" ({cell.error})" if cell.error else "")
                )
    bad = [c for c in record.cells if c.status != RunStatus.succeeded]
    record.status = RunStatus.failed if bad else RunStatus.succeeded
    if bad:
        record.error = f"{len(bad)} of {len(record.cells)} cell(s) did not succeed (see each cell's error)"
    write_outputs(ctx, record)
    save(ctx, record)
    return record


# ----------------------------------------------------------------------------------------------------------------
# The table and the figure
# ----------------------------------------------------------------------------------------------------------------


def write_outputs(ctx, record: BakeoffRecord, out_dir: Path | None = None) -> None:
    """bakeoff.md and bakeoff.png beside the record (and in out_dir too, when given)."""
    for d in [_dir(ctx, record.bakeoff_id)] + ([Path(out_dir)] if out_dir else []):
        d.mkdir(parents=True, exist_ok=True)
        record.table = table_markdown(record)
        (d / TABLE_MD).write_text(record.table + "\n")
        figure(record, d / FIGURE_PNG)
        if d == _dir(ctx, record.bakeoff_id):
            record.table_path, record.figure_path = str(d / TABLE_MD), str(d / FIGURE_PNG)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def _interval(iv, digits: int = 1, pct: bool = False) -> str:
    if iv is None or iv.mean is None:
        return "n/a"
    k = 100.0 if pct else 1.0
    s = f"{_fmt(k * iv.mean, digits)}{'%' if pct else ''}"
    if iv.ci95:
        lo, hi = (max(0.0, iv.ci95[0]), min(1.0, iv.ci95[1])) if pct else iv.ci95  # a rate stays in [0, 1]
        s += f" [{_fmt(k * lo, digits)}, {_fmt(k * hi, digits)}]"
    return s + f" (n={iv.n})"


def encoder_label(cell: BakeoffCell) -> str:
    model = cell.model or cell.encoder_url
    return f"`{model.removeprefix('preset:')}`" + (" preset" if model.startswith("preset:") else "")


def all_stand_ins(record: BakeoffRecord) -> bool:
    return bool(record.cells) and all(c.stand_in for c in record.cells)


def table_markdown(record: BakeoffRecord) -> str:
    """One row per (task, encoder, readout): its exact weights, stand-in mark, seeds, score across seeds."""
    s = record.settings
    title = f"# Bake-off `{record.bakeoff_id}`"
    if all_stand_ins(record):
        title += f": every encoder is a {STAND_IN}"
    d, bc, ev = s.get("dataset", {}), s.get("bc", {}), s.get("eval", {})
    steps = s.get("steps") or {}
    steps_text = "/".join(sorted({str(v) for v in steps.values()})) if isinstance(steps, dict) else str(steps)
    lines = [
        title,
        "",
        f"Protocol: {s.get('protocol') or 'none (this tool defaults)'}. Demos per task: {d.get('episodes')} x "
        f"{steps_text} steps at {d.get('image_size')} px (experts: "
        + ", ".join(f"{t} {e}" for t, e in (s.get("experts") or {}).items())
        + f"). BC: {bc.get('head', 'findings')} head, {bc.get('epochs', 100)} epochs, batch {bc.get('batch_size', 256)}"
        f", lr schedule {bc.get('lr_schedule', 'cosine')}, kept epoch {bc.get('select', 'best_val')}. Evaluation: "
        f"{ev.get('episodes')} episodes of the demos' length, the same episodes for every seed (eval seed "
        f"{ev.get('seed')}). Seeds: {', '.join(map(str, s.get('seeds', [])))}. Score: {s.get('score')}; per seed: "
        "that seed's mean return.",
        "",
    ]
    if record.demo_returns:
        lines += [
            "Reference, the demonstrator's own mean return over its demos: "
            + ", ".join(f"{t} {_fmt(v)}" for t, v in record.demo_returns.items())
            + ".",
            "",
        ]
    if s.get("tasks_not_here"):
        lines += [f"Tasks of the protocol this trainer does not have: {', '.join(s['tasks_not_here'])}.", ""]
    if any(c.stand_in for c in record.cells):
        lines += [f"> Rows marked **stand-in** use random-init weights: a {STAND_IN.split(': ', 1)[1]}.", ""]
    lines += [
        "| Task | Encoder | Family | Weights | Readout | Seeds | Return [95% CI] | Per seed | Success [95% CI] "
        "| Study | Status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in record.cells:
        enc = encoder_label(c) + (" **stand-in (random-init)**" if c.stand_in else "")
        per = "; ".join(_fmt(v) for v in c.score.values) if c.score and c.score.values else "-"
        status = c.status.value + (f": {c.error}" if c.error else "")
        lines.append(
            f"| {c.task} | {enc} | {c.family or '-'} | `{c.weights or '-'}` | {c.readout} | {len(s.get('seeds', []))} "
            f"| {_interval(c.score)} | {per} | {_interval(c.success, 0, pct=True) if c.success else '-'} | "
            f"{'`' + c.study_id + '`' if c.study_id else '-'} | {status.replace('|', '/')} |"
        )
    return "\n".join(lines)


def figure(record: BakeoffRecord, path: Path) -> Path:
    """One panel per task: each (encoder, readout) its mean return across seeds with the 95% t-interval and the
    per-seed points; stand-ins drawn hollow and named in their tick label."""
    from vjepa_robot_lab.report.plots import _pyplot, _save

    plt = _pyplot()
    tasks = list(dict.fromkeys(c.task for c in record.cells)) or ["-"]
    per_task = max(1, len(record.cells) // len(tasks))
    width = min(24.0, max(5.0, 1.2 * per_task + 2.0) * len(tasks))
    fig, axes = plt.subplots(1, len(tasks), figsize=(width, 4.8), squeeze=False)
    readouts = list(dict.fromkeys(c.readout for c in record.cells))
    colours = {r: f"C{i}" for i, r in enumerate(readouts)}
    for ax, task in zip(axes[0], tasks):
        cells = [c for c in record.cells if c.task == task]
        labels = []
        for x, c in enumerate(cells):
            colour = colours[c.readout]
            name = (c.model or "?").removeprefix("preset:")
            labels.append(f"{name}\n{c.readout}" + ("\n(stand-in)" if c.stand_in else ""))
            if c.score is None or c.score.mean is None:
                ax.annotate("no score", (x, 0), ha="center", va="bottom", fontsize=8, color="grey")
                continue
            lo, hi = c.score.ci95 or (c.score.mean, c.score.mean)
            face = "none" if c.stand_in else colour
            yerr = [[c.score.mean - lo], [hi - c.score.mean]]
            ax.errorbar([x], [c.score.mean], yerr=yerr, fmt="o", color=colour, mfc=face, capsize=5, markersize=8)
            ax.scatter([x + 0.12] * len(c.score.values), c.score.values, s=12, color=colour, alpha=0.6, zorder=3)
        ax.set_xticks(range(len(cells)), labels, fontsize=7)
        ax.set_xlim(-0.6, len(cells) - 0.4)
        ax.set_title(f"task {task}", fontsize=10)
        ax.set_ylabel("evaluation return (mean over episodes)")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[r], label=r) for r in readouts]
    axes[0][0].legend(handles=handles, title="readout", fontsize=7, title_fontsize=7, loc="best")
    n = len(record.settings.get("seeds", []))
    title = f"Bake-off {record.bakeoff_id}: mean return across {n} seed(s), 95% t-interval, dots = seeds"
    if any(c.stand_in for c in record.cells):
        title += "\nhollow = stand-in (random-init weights): plumbing check, not a result of the model"
    fig.suptitle(title, fontsize=9)
    return _save(fig, Path(path))


def record_json(record: BakeoffRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=1)
