"""The report's rows: what a run is (features, encoder, readout, condition) and one row per evaluation, then one
per condition with its seeds aggregated. Plain data for plots.py and markdown.py; nothing here draws or writes.

Every label is read from the run's typed record (contract.RunRecord): `lineage` says which encoder the features
came from and whether it was random-init (RunLineage.random_init, written where the encoder was loaded), so no
label is derived from preset names.
"""

from __future__ import annotations

import json
from typing import Any

from vjepa_robot_client.contract import BCMetrics, FeatureSource, RunRecord, SACMetrics
from vjepa_robot_lab.evaluation.stats import t_interval, wilson_ci95
from vjepa_robot_lab.records.run_kinds import RUN_KINDS, kept_val_loss, run_kind
from vjepa_robot_lab.records.runs import migrate

BASELINE_NAMES = {
    "jacobian": "Jacobian-transpose expert",
    "p-controller": "P-controller (the findings' expert)",
    "random": "Random policy",
}
FEATURE_NAMES = {
    "state": "state (8-d oracle: joint cos/sin, to_target, velocities)",
    "random": "random features",
    "pixels": "pixels (learning from scratch: DrQ-v2 conv trained with the policy, 3 stacked frames)",
}
PLUMBING = "plumbing check, not a V-JEPA 2 result"
FEATURE_ORDER = {"state": 0, "vjepa2": 1, "pixels": 2, "random": 3}
BASELINE_ORDER = {"jacobian": 0, "p-controller": 1, "random": 2}
INIT_WORDS = {True: "random-init", False: "pretrained", None: "init not recorded"}
# Records written before lineage.family_label (the encoder's GET /info names its family now): their family id's name.
# Frozen: a new family's runs carry their label, so this table never grows.
FAMILY_NAMES = {
    "vjepa2": "V-JEPA 2",
    "videomae": "VideoMAE",
    "dinov2": "DINOv2",
    "siglip": "SigLIP",
    "efficientnet-lite": "EfficientNet-Lite (ImageNet-supervised CNN)",
}
NO_WEIGHTS = "-"  # a record written before lineage.weights (issue 18), or features with no encoder


def weights_of(run: RunRecord | dict) -> str:
    """The encoder's pinned weights as the row prints them (RunLineage.weights), "-" where not recorded."""
    lin = as_record(run).lineage
    return (lin.weights if lin is not None else None) or NO_WEIGHTS


def short_weights(weights: str | None, n: int = 12) -> str:
    """A pin, shortened for a table cell: 'sha256:' + 12 hex, a 12-hex hub commit, or the random-init tag."""
    if not weights or weights == NO_WEIGHTS:
        return NO_WEIGHTS
    kind, sep, rest = weights.partition(":")
    if sep and kind in ("sha256", "random-init"):
        return f"{kind}:{rest[:n]}" if kind == "sha256" else weights
    return weights[:n]


# ----------------------------------------------------------------------------------------------------------------
# Numbers for people
# ----------------------------------------------------------------------------------------------------------------


def pct(rate: float | None, ci: Any = None) -> str:
    """ "20% [8, 42]" (rounded to whole percent; bounds clamped to [0, 100])."""
    if rate is None:
        return "n/a"
    s = f"{100 * rate:.0f}%"
    if ci and ci[0] is not None:
        lo, hi = max(0.0, float(ci[0])), min(1.0, float(ci[1]))
        s += f" [{100 * lo:.0f}, {100 * hi:.0f}]"
    return s


def num(v: Any, digits: int = 1, ci: Any = None) -> str:
    if v is None:
        return "n/a"
    try:
        s = f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return str(v)
    if ci and ci[0] is not None:
        s += f" [{float(ci[0]):,.{digits}f}, {float(ci[1]):,.{digits}f}]"
    return s


def sci(v: Any) -> str:
    try:
        return f"{float(v):.2e}"
    except (TypeError, ValueError):
        return "n/a"


# ----------------------------------------------------------------------------------------------------------------
# What a run is: features, encoder, readout, condition
# ----------------------------------------------------------------------------------------------------------------


def as_record(run: RunRecord | dict) -> RunRecord:
    """A typed record: stored dicts (any trainer version) go through runs.migrate, the one legacy reader."""
    return run if isinstance(run, RunRecord) else migrate(run)


def as_records(runs) -> list[RunRecord]:
    return [as_record(r) for r in runs]


def features_of(run: RunRecord) -> str | None:
    """The run's feature source ('vjepa2', 'state', 'random'), None for a scripted baseline."""
    return run.lineage.features.value if run.lineage is not None else None


def readout_of(run: RunRecord) -> str | None:
    return run.lineage.readout.value if run.lineage is not None else None


def dataset_of(run: RunRecord) -> str | None:
    return run.lineage.dataset if run.lineage is not None else None


def seed_of(run: RunRecord) -> int | None:
    return getattr(run.config, "seed", None)


def policy_of(run: RunRecord) -> str:
    return str(getattr(run.config, "policy", None) or "?")


def _model_name(model: str) -> str:
    return model.removeprefix("preset:")


def feature_lineage(run: RunRecord | dict) -> dict:
    """The run's feature facts as a flat dict (features, dim, encoder_id, model, image_size = encoder input,
    random_init, pooling, grid_size, readout), {} for a baseline: for consoles; the report reads run.lineage."""
    lin = as_record(run).lineage
    if lin is None:
        return {}
    out = {
        "features": lin.features.value,
        "dim": lin.dim,
        "encoder_id": lin.encoder_id,
        "model": lin.encoder_model,
        "image_size": lin.encoder_image_size,
        "random_init": lin.random_init,
        "pooling": lin.pooling.value,
        "grid_size": lin.grid_size,
        "readout": lin.readout.value,
    }
    return {k: v for k, v in out.items() if v is not None}


def encoder_info(run: RunRecord | dict) -> dict:
    """{"features", "label", "random_init" (True/False/None = not recorded), "encoder_id"} for a run."""
    run = as_record(run)
    lin = run.lineage
    if lin is None:
        return {"features": None, "label": "simulator state (scripted policy)", "random_init": False}
    features = lin.features.value
    if lin.features != FeatureSource.vjepa2:
        label = FEATURE_NAMES.get(features, features)
        if lin.features == FeatureSource.random and lin.dim:
            label += f" ({lin.dim}-d)"
        if lin.features == FeatureSource.pixels and lin.image_size:
            label += f", {lin.image_size} px frames"
        return {"features": features, "label": label, "random_init": False, "weights": None}
    # the name the encoder gave (/info family_label); older records: their family id's name (before families: V-JEPA 2)
    family = lin.family_label or FAMILY_NAMES.get(lin.family or "vjepa2", lin.family)
    if not lin.encoder_model:
        label = f"{family}, encoder not recorded (run unfinished?)"
    else:
        model = lin.encoder_model
        named = f"`{_model_name(model)}` preset" if model.startswith("preset:") else f"`{model}`"
        label = f"{family} {named}, {INIT_WORDS[lin.random_init]}"
    size = lin.encoder_image_size
    details = [
        f"{lin.dim}-d" if lin.dim else None,
        f"{size} px input" if size else None,
        f"{lin.image_size} px frames" if lin.image_size and lin.image_size != size else None,
        f"{lin.grid_size}x{lin.grid_size} token grid" if lin.pooling.value == "grid" and lin.grid_size else None,
    ]
    label += "".join(f", {d}" for d in details if d)
    return {
        "features": "vjepa2",
        "label": label,
        "random_init": lin.random_init,
        "encoder_id": lin.encoder_id,
        "weights": lin.weights,
    }


def is_plumbing(run: RunRecord | dict) -> bool:
    """A run whose features come from a random-init V-JEPA 2 (a stand-in, not the experiment)."""
    return as_record(run).is_stand_in


def condition_name(run: RunRecord | dict, short: bool = False) -> str:
    """The condition, naming the features (and for vjepa2 the encoder) exactly; `short` leaves the encoder out
    (for a table whose row names it in another column)."""
    run = as_record(run)
    if run.lineage is None:
        policy = policy_of(run)
        return BASELINE_NAMES.get(policy, f"Baseline: {policy}")
    kind = RUN_KINDS.get(run.kind)
    label = kind.label if kind else run.kind
    info = encoder_info(run)
    feats = features_of(run) if short or info["features"] != "vjepa2" else "vjepa2: " + info["label"]
    readout = readout_of(run)
    name = f"{label} on {feats}" + (f", {readout} readout" if readout != "mean" else "")
    if dataset_of(run):
        name += f" ({dataset_of(run)})"
    return name + (f" [{PLUMBING}]" if run.is_stand_in and not short else "")


def short_name(run: RunRecord | dict) -> str:
    """A compact label for plots: 'BC vjepa2 (tiny, random-init)'."""
    run = as_record(run)
    if run.lineage is None:
        return BASELINE_NAMES.get(policy_of(run), policy_of(run))
    kind = RUN_KINDS.get(run.kind)
    f = features_of(run)
    if run.lineage.features == FeatureSource.vjepa2:
        model = _model_name(run.lineage.encoder_model or "?")
        f = f"vjepa2 ({model}, {INIT_WORDS[run.lineage.random_init]})"
    readout = readout_of(run)
    return f"{kind.label if kind else run.kind} {f}" + (f" [{readout}]" if readout != "mean" else "")


def condition_key(run: RunRecord) -> str:
    """Runs with the same key differ only in their seed (and study id)."""
    cfg = {k: v for k, v in run.config.model_dump(mode="json").items() if k not in ("seed", "study_id")}
    return json.dumps(
        {"kind": run.kind, "config": cfg, "encoder": encoder_info(run).get("encoder_id"), "readout": readout_of(run)},
        sort_keys=True,
        default=str,
    )


def order_key(run: RunRecord) -> tuple:
    kind = RUN_KINDS.get(run.kind)
    sub = BASELINE_ORDER.get(policy_of(run), 9) if run.lineage is None else FEATURE_ORDER.get(features_of(run) or "", 9)
    return (kind.order if kind else 9, sub, condition_name(run))


def final_metric(run: RunRecord) -> tuple[str, float | None]:
    """The run kind's headline training result (run_kinds.py): BC's kept-epoch validation MSE, SAC's final
    evaluation return."""
    return run_kind(run.kind).final(run)


# ----------------------------------------------------------------------------------------------------------------
# Rows: one per evaluation, then one per condition (seeds aggregated)
# ----------------------------------------------------------------------------------------------------------------


def evaluation_rows(runs) -> list[dict]:
    """One row per finished evaluation with a success rate (successes counted from the episodes)."""
    rows = []
    for run in as_records(runs):
        for ev in run.evaluations:
            if ev.success_rate is None:
                continue
            n = len(ev.episodes) or int(ev.episodes_total or 0)
            rate = ev.success_rate  # None: a task without success (vjepa_robot_lab/envs/tasks.py): return only
            k = sum(bool(e.success) for e in ev.episodes) if ev.episodes else round((rate or 0.0) * n)
            req = ev.request or {}
            task = ev.task or req.get("task")
            rows.append(
                {
                    "run": run,
                    "condition": condition_name(run),
                    "run_id": run.run_id,
                    "eval_id": ev.eval_id,
                    "kind": run.kind,
                    "seed": seed_of(run),
                    "success_rate": float(rate) if rate is not None else None,
                    "successes": k,
                    "ci": (wilson_ci95(k, n) if n else ev.success_ci95) if rate is not None else None,
                    "mean_return": ev.mean_return,
                    "episodes": n,
                    "task": task,
                    "protocol": {"task": task, "steps": req.get("steps"), "eval_seed": req.get("seed"), "episodes": n}
                    | ({"targets": req["targets"]} if req.get("targets", "uniform") != "uniform" else {}),
                    "image_size": req.get("image_size"),
                    "gif": ev.gif,
                    "plumbing": run.is_stand_in,
                }
            )
    return rows


def condition_rows(runs) -> list[dict]:
    """Evaluation rows grouped by condition and evaluation protocol, in reading order. Each row names its
    features, encoder, readout and dataset in columns of their own."""
    groups: dict[str, list[dict]] = {}
    for r in evaluation_rows(runs):
        key = condition_key(r["run"]) + json.dumps(r["protocol"], sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        members.sort(key=lambda r: (str(r["seed"]), str(r["run_id"])))
        first = members[0]
        run = first["run"]
        rates = [m["success_rate"] for m in members]
        mean, lo, hi = t_interval(rates)
        multi = len(members) > 1
        returns = [float(m["mean_return"]) for m in members if m["mean_return"] is not None]
        out.append(
            {
                "condition": first["condition"],
                "condition_short": condition_name(run, short=True),
                "short": short_name(run),
                "kind": first["kind"],
                "task": first["task"],
                "plumbing": first["plumbing"],
                "features": features_of(run),
                "encoder": encoder_info(run)["label"],
                "weights": weights_of(run),
                "readout": readout_of(run) or "-",
                "dataset": dataset_of(run),
                "members": members,
                "n_runs": len(members),
                "seeds": [m["seed"] for m in members],
                "success_rate": mean,
                "ci": (max(0.0, lo), min(1.0, hi)) if multi else first["ci"],
                "ci_kind": "t across seeds" if multi else "Wilson",
                "mean_return": t_interval(returns)[0] if returns else None,
                "episodes": first["episodes"],
                "order": order_key(run) + (str(first["task"]),),
            }
        )
    return sorted(out, key=lambda g: g["order"])


def trained(kind_name: str) -> bool:
    """Whether runs of this kind are trained (have training seeds); a baseline is an expert, evaluated."""
    kind = RUN_KINDS.get(kind_name)
    return kind is None or kind.request is not None


def seeds_cell(g: dict) -> str:
    if not trained(g["kind"]):
        return f"- ({g['n_runs']} run{'s' if g['n_runs'] > 1 else ''})"
    seeds = [s for s in g["seeds"] if s is not None]
    distinct = len(set(seeds))
    s = f"{distinct} (seed{'s' if distinct > 1 else ''} {', '.join(map(str, seeds))})" if seeds else str(g["n_runs"])
    if distinct < len(seeds):
        s += f"; {len(seeds)} runs, repeats of a seed"
    return s


def per_seed_cell(g: dict) -> str:
    if g["n_runs"] == 1:
        return "-"
    return "; ".join(
        f"{'s' + str(m['seed']) if m['seed'] is not None else m['run_id']}: {pct(m['success_rate'], m['ci'])}"
        for m in g["members"]
    )


def notes_cell(g: dict) -> str:
    notes = []
    if g["task"]:
        notes.append(f"task {g['task']}")
    sizes = {m["image_size"] for m in g["members"] if m["image_size"]}
    if sizes and g["features"] == "vjepa2":
        notes.append("frames " + "/".join(f"{s} px" for s in sorted(sizes)))
    runs: list[RunRecord] = [m["run"] for m in g["members"]]
    kept = [r.metrics.selected_epoch for r in runs if isinstance(r.metrics, BCMetrics)]
    if any(kept):
        notes.append("kept epoch " + ", ".join(str(k) for k in kept))
    steps = [r.metrics.env_steps for r in runs if isinstance(r.metrics, SACMetrics)]
    if any(steps):
        notes.append(", ".join(f"{int(s):,}" for s in steps if s) + " env steps")
    notes.append(", ".join(f"`{m['run_id']}`" for m in g["members"]))
    return "; ".join(notes)


def bc_curves(run: RunRecord) -> tuple[list, list]:
    """(train, val) per-epoch MSE of a BC run."""
    m = run.metrics
    return (list(m.train_loss_curve), list(m.val_loss_curve)) if isinstance(m, BCMetrics) else ([], [])


def bc_row(run: RunRecord) -> dict:
    """One BC run's training summary: epochs, the kept epoch and its rule, its validation MSE (run_kinds'
    kept_val_loss, the one definition), the last epoch's losses, data sizes, time."""
    m = run.metrics
    train, val = bc_curves(run)
    kept = m.selected_epoch if isinstance(m, BCMetrics) else None
    return {
        "condition": condition_name(run),
        "run_id": run.run_id,
        "seed": seed_of(run),
        "epochs": len(train),
        "kept_epoch": kept or len(train),
        "rule": m.select or getattr(run.config, "select", None) or "last (not recorded)",
        "kept_val": kept_val_loss(m) if kept else None,
        "last_train": train[-1] if train else None,
        "last_val": next((v for v in reversed(val) if v is not None), None),
        "n_train": m.n_train,
        "n_val": m.n_val,
        "train_s": m.train_s,
    }


def sac_groups(runs: list[RunRecord]) -> list[list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for r in runs:
        groups.setdefault(condition_key(r), []).append(r)
    return sorted(groups.values(), key=lambda g: order_key(g[0]))


def sac_row(members: list[RunRecord]) -> dict:
    finals = [r.metrics.final_eval if isinstance(r.metrics, SACMetrics) else None for r in members]
    rets = [f.mean_return for f in finals if f is not None]
    mean, lo, hi = t_interval(rets) if rets else (None, None, None)
    succ = [f.success_rate for f in finals if f is not None and f.success_rate is not None]
    return {
        "condition": condition_name(members[0]),
        "n": len(members),
        "mean": mean,
        "ci": (lo, hi),
        "per_seed": [(seed_of(r), f.mean_return if f else None) for r, f in zip(members, finals)],
        "success": sum(succ) / len(succ) if succ else None,
        "env_steps": sorted({r.metrics.env_steps for r in members} - {None}),
    }


# ----------------------------------------------------------------------------------------------------------------
# Probe rows
# ----------------------------------------------------------------------------------------------------------------


def probe_feature_label(p: dict) -> str:
    """A probe file's features, named as a run's would be (its lineage is the feature source's own)."""
    if p.get("features") == "vjepa2":
        fake = migrate(
            {
                "run_id": "probe",
                "kind": "bc",
                "status": "succeeded",
                "config": {"features": "vjepa2"},
                "lineage": {"features": "vjepa2"},
                "metrics": {"features_lineage": p.get("lineage") or {}},
            }
        )
        return "vjepa2: " + encoder_info(fake)["label"] + (f" [{PLUMBING}]" if fake.is_stand_in else "")
    return FEATURE_NAMES.get(p.get("features"), str(p.get("features")))


def _r2(entry: dict | None) -> str:
    if not entry or entry.get("r2") is None or entry["r2"] != entry["r2"]:  # missing or NaN
        return "n/a"
    return f"{entry['r2']:.2f} ± {entry.get('r2_sd', 0):.2f}"


def probe_rows(probes: list[dict]) -> list[dict]:
    """One row per (features, target): linear R2 (mean ± sd over folds), alpha (edge?), MLP R2."""
    rows = []
    for p in probes:
        if "linear" not in p:  # an old single-split probe file
            continue
        for t in p.get("targets") or list(p["linear"]):
            lin, mlp = p["linear"].get(t) or {}, (p.get("mlp") or {}).get(t)
            alpha = lin.get("alpha")
            rows.append(
                {
                    "features": probe_feature_label(p),
                    "dataset": p.get("dataset", ""),
                    "target": t,
                    "linear": _r2(lin),
                    "alpha": (f"{alpha:.2g}" if alpha is not None else "n/a")
                    + (" (grid edge)" if lin.get("alpha_at_edge") else ""),
                    "mlp": _r2(mlp),
                    "folds": f"{p.get('folds')} x {p.get('n_episodes')} episodes",
                }
            )
    return rows
