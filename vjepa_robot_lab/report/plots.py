"""The report's pictures (matplotlib, Agg only): success bars, BC loss curves, SAC learning curves.

Each plot is built by a `*_figure` function (returns the figure, for tests to inspect) and saved by `plot_*`.
Rules kept here: every bar names its condition uniquely (the dataset, then the task and run ids are added when
labels would collide), with its 95% interval and n; per-seed dots (and the title's mention of them) only when a
bar has several seeds; random-init stand-ins hatched and named; each BC run's kept-epoch marker drawn above every
curve with a marker of its own and a small sideways offset, so one run's marker never hides another's (markers
closer than a marker's size count as one spot); every legend outside the axes, so it covers no bar, point or
curve; by-distance bars of several seeds are the mean of the seeds' rates with a t-interval across seeds (one seed:
Wilson over its episodes, said in the legend); an empty distance bin says n=0; episodes that share a point
(returns of 0) are set apart sideways, one marker shape per condition.
"""

from __future__ import annotations

import math
from pathlib import Path

from vjepa_robot_client.contract import RunRecord, SACMetrics
from vjepa_robot_lab.evaluation.stats import t_interval, wilson_ci95
from vjepa_robot_lab.records.run_kinds import RUN_KINDS
from vjepa_robot_lab.report.rows import (
    as_records,
    bc_curves,
    is_plumbing,
    sac_groups,
    seed_of,
    short_name,
    trained,
)

SUCCESS_PNG = "success.png"
BC_LOSS_PNG = "bc_loss.png"
SAC_CURVES_PNG = "sac_curves.png"
BY_DISTANCE_PNG = "success_by_distance.png"
KEPT_MARKERS = ("*", "P", "X", "D", "^", "s", "v", "p", "h", "<", ">", "8")
CURVE_Z, KEPT_Z = 2, 10  # kept-epoch markers above every curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # "tight": the legends sit outside the axes
    _pyplot().close(fig)
    return path


def kind_color(kind: str) -> str:
    k = RUN_KINDS.get(kind)
    return k.color if k else "tab:orange"


# ----------------------------------------------------------------------------------------------------------------
# Success bars
# ----------------------------------------------------------------------------------------------------------------


def bar_labels(groups: list[dict]) -> list[str]:
    """One distinct label per bar: the short condition name (+ task unless easy), then, only where labels
    collide, the dataset, then the run ids."""
    base = [g["short"] + (f" [{g['task']}]" if g["task"] and g["task"] != "easy" else "") for g in groups]
    labels = distinct_labels(base, [[g["dataset"], ", ".join(m["run_id"] for m in g["members"])] for g in groups])
    labels = [b + "\n" + s[len(b) :].strip() if s != b else s for s, b in zip(labels, base)]  # additions: own line
    return [s + ("\n(plumbing check)" if g["plumbing"] else "") for s, g in zip(labels, groups)]


def success_title(groups: list[dict]) -> str:
    t = (
        "Live success rate: bars = mean over seeds, whiskers = 95% interval\n"
        "(t-interval across seeds when >1 seed, else Wilson over episodes)"
    )
    if any(g["n_runs"] > 1 for g in groups):
        t += "; dots = single seeds"
    return t


def success_figure(groups: list[dict]):
    """One bar per condition (mean over seeds), its 95% interval, per-seed points, n per bar, value labels."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(max(7, 1.25 * len(groups) + 2), 5.2))
    for i, g in enumerate(groups):
        rate = 100 * g["success_rate"]
        lo, hi = (100 * g["ci"][0], 100 * g["ci"][1]) if g["ci"] else (rate, rate)
        ax.bar(
            i,
            rate,
            color=kind_color(g["kind"]),
            hatch="//" if g["plumbing"] else None,
            edgecolor="black" if g["plumbing"] else None,
            linewidth=0.5,
        )
        ax.errorbar(i, rate, yerr=[[rate - lo], [hi - rate]], color="black", capsize=4, lw=1)
        if g["n_runs"] > 1:
            pts = [100 * m["success_rate"] for m in g["members"]]
            ax.scatter([i] * len(pts), pts, s=14, color="black", zorder=3)
        seeds = "" if not trained(g["kind"]) else f" x {len(set(g['seeds']))} seed{'s' if g['n_runs'] > 1 else ''}"
        ax.text(i, min(hi, 100) + 2, f"{rate:.0f}%\nn={g['episodes']} ep{seeds}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), bar_labels(groups), rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 119)
    ax.set_title(success_title(groups), fontsize=9)
    handles = [
        Patch(color=k.color, label=name if k.request is not None else f"scripted {name}")  # untrained: an expert
        for name, k in RUN_KINDS.items()
        if any(g["kind"] == name for g in groups)
    ]
    if any(g["plumbing"] for g in groups):
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="black",
                hatch="//",
                label="random-init encoder: plumbing check, not V-JEPA 2",
            )
        )
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def plot_success(groups: list[dict], path: Path) -> Path:
    return _save(success_figure(groups), path)


# ----------------------------------------------------------------------------------------------------------------
# BC losses
# ----------------------------------------------------------------------------------------------------------------


KEPT_SPREAD_PT = 9.0  # sideways distance (points) between kept-epoch markers that would sit on one spot


def kept_markers(runs: list[RunRecord]) -> list[tuple[int, float, str, float] | None]:
    """(epoch, val MSE, marker, sideways offset in points) of each BC run's kept epoch, None where it kept none.
    Each run has its own marker; runs whose kept points coincide are spread sideways (in points, so at any
    epoch count) around the true epoch, so none hides another."""
    points = []
    for run in runs:
        _, val = bc_curves(run)
        kept = getattr(run.metrics, "selected_epoch", None)
        points.append((kept, val[kept - 1]) if kept and 0 < kept <= len(val) and val[kept - 1] is not None else None)
    span = max((len(bc_curves(r)[1]) for r in runs), default=1)
    out: list[tuple[int, float, str, float] | None] = []
    for i, p in enumerate(points):
        if p is None:
            out.append(None)
            continue
        same = [j for j, q in enumerate(points) if q is not None and _one_spot(p, q, span)]
        k = same.index(i)
        out.append((p[0], p[1], KEPT_MARKERS[i % len(KEPT_MARKERS)], KEPT_SPREAD_PT * (k - (len(same) - 1) / 2)))
    return out


def _one_spot(p: tuple[int, float], q: tuple[int, float], epochs: int) -> bool:
    """Two kept points a reader would see as one: epochs within 2% of the axis and losses within 30% (the loss
    axis is logarithmic, so 30% is a few points at any scale)."""
    close_x = abs(p[0] - q[0]) <= max(1, 0.02 * epochs)
    return close_x and max(p[1], q[1]) <= 1.3 * min(p[1], q[1])


def distinct_labels(labels: list[str], extras: list[list[str | None]]) -> list[str]:
    """Labels made unique by adding, only where they collide, the next extra that tells them apart."""
    labels = list(labels)
    for level in range(max((len(e) for e in extras), default=0)):
        dup = {i for i, s in enumerate(labels) if labels.count(s) > 1}
        for i in dup:
            if level < len(extras[i]) and extras[i][level]:
                labels[i] += f" ({extras[i][level]})"
    return labels


def bc_loss_figure(runs):
    """Train (solid) and validation (dashed) MSE per epoch; each run's kept epoch marked on top."""
    from matplotlib.transforms import offset_copy

    runs = as_records(runs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    markers = kept_markers(runs)
    labels = distinct_labels(
        [short_name(r) + (f" s{seed_of(r)}" if seed_of(r) is not None else "") for r in runs],
        [[r.lineage.dataset if r.lineage else None, r.run_id] for r in runs],
    )
    for i, (run, label) in enumerate(zip(runs, labels)):
        train, val = bc_curves(run)
        color = f"C{i % 10}"
        label += " (plumbing)" if is_plumbing(run) else ""
        ax.plot(range(1, len(train) + 1), train, color=color, lw=1, label=f"{label}: train", zorder=CURVE_Z)
        pts = [(e + 1, v) for e, v in enumerate(val) if v is not None]
        if pts:
            ax.plot(*zip(*pts), color=color, linestyle="--", lw=1, label=f"{label}: validation", zorder=CURVE_Z)
    for i, (run, m) in enumerate(zip(runs, markers)):  # after every curve, above them all
        if m is None:
            continue
        epoch, y, marker, dx = m
        ax.plot(
            [epoch],
            [y],
            marker=marker,
            ms=11 if marker == "*" else 8,
            color=f"C{i % 10}",
            markeredgecolor="black",
            linestyle="",
            zorder=KEPT_Z + i,
            label=f"kept epoch {epoch} ({run.run_id})",
            transform=offset_copy(ax.transData, fig=fig, x=dx, y=0, units="points"),
        )
    ax.set_yscale("log")
    ax.set_xlim(left=-0.04 * max(len(bc_curves(r)[0]) for r in runs) - 1)  # an epoch-1 marker moved left stays inside
    ax.set_xlabel("epoch", labelpad=1)
    ax.set_ylabel("MSE on expert actions")
    ax.set_title(
        "BC loss: solid = train, dashed = validation episodes, marker = the epoch each run kept\n"
        "(markers on one spot are set side by side)",
        fontsize=10,
    )
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15), borderaxespad=0)
    return fig


def plot_bc_losses(runs, path: Path) -> Path:
    return _save(bc_loss_figure(runs), path)


# ----------------------------------------------------------------------------------------------------------------
# SAC learning curves
# ----------------------------------------------------------------------------------------------------------------


def sac_curves_figure(runs):
    """Per condition: mean over seeds with a 95% band and thin per-seed lines; the final evaluation is a star.

    One seed: the band is the per-point 95% interval over its evaluation episodes (Wilson for success,
    mean +- 1.96 sd/sqrt(n) for return)."""
    import numpy as np

    runs = as_records(runs)
    plt = _pyplot()
    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, members in enumerate(sac_groups(runs)):
        color = f"C{i % 10}"
        curves = [r.metrics.curve if isinstance(r.metrics, SACMetrics) else [] for r in members]
        label = (
            short_name(members[0])
            + f" ({len(members)} seed{'s' if len(members) > 1 else ''})"
            + (" (plumbing)" if is_plumbing(members[0]) else "")
        )
        common = sorted(set.intersection(*[{p.env_steps for p in c} for c in curves]))
        for ax, key, scale in ((ax_s, "success_rate", 100), (ax_r, "mean_return", 1)):

            def y(p, key: str = key, scale: int = scale) -> float:
                return scale * (getattr(p, key) or 0)

            if len(members) > 1:
                for c in curves:
                    ax.plot([p.env_steps for p in c], [y(p) for p in c], color=color, lw=0.6, alpha=0.5)
                by_x = [[y(next(p for p in c if p.env_steps == x)) for c in curves] for x in common]
                stats = [t_interval(v) for v in by_x]
                mean = [s[0] for s in stats]
                lo, hi = [s[1] for s in stats], [s[2] for s in stats]
                x = common
            else:
                c = curves[0]
                x = [p.env_steps for p in c]
                mean = [y(p) for p in c]
                if key == "success_rate":
                    b = [
                        wilson_ci95(round((p.success_rate or 0) * (p.eval_episodes or 0)), p.eval_episodes or 0)
                        for p in c
                    ]
                    lo, hi = [100 * v[0] for v in b], [100 * v[1] for v in b]
                else:
                    half = [1.96 * (p.std_return or 0) / math.sqrt(max(p.eval_episodes or 1, 1)) for p in c]
                    lo, hi = [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)]
            if not x:
                continue
            ax.plot(x, mean, color=color, lw=1.8, label=label)
            ax.fill_between(
                x,
                np.clip(lo, 0, None),
                np.clip(hi, None, 100 if key == "success_rate" else None),
                color=color,
                alpha=0.18,
            )
            ax.plot(
                [x[-1]],
                [mean[-1]],
                marker="*",
                ms=13,
                color=color,
                markeredgecolor="black",
                linestyle="",
                zorder=KEPT_Z + i,
            )
    for ax in (ax_s, ax_r):
        ax.plot(
            [],
            [],
            marker="*",
            ms=10,
            color="white",
            markeredgecolor="black",
            linestyle="",
            label="final evaluation (closes the curve)",
        )
    ax_s.set(xlabel="env steps (simulator)", ylabel="success rate (%)", title="SAC success rate", ylim=(0, 105))
    ax_r.set(xlabel="env steps (simulator)", ylabel="mean return", title="SAC mean return")
    ax_s.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.16), borderaxespad=0)
    fig.suptitle(
        "Deterministic evaluations during training; band = 95% interval (across seeds, or over episodes for one seed)",
        fontsize=9,
    )
    return fig


def plot_sac_curves(runs, path: Path) -> Path:
    return _save(sac_curves_figure(runs), path)


# ----------------------------------------------------------------------------------------------------------------
# Success and return by target distance (issue 22)
# ----------------------------------------------------------------------------------------------------------------


def member_distance_episodes(member: dict) -> list[tuple[float, bool, float]]:
    """(target radius m, success, return) of every episode of one member's evaluation (one run: one training seed)
    that recorded its target (reacher evaluations do, with any `targets` option: evaluate.target_of)."""
    out = []
    for ev in member["run"].evaluations:
        if ev.eval_id != member["eval_id"]:
            continue
        for e in ev.episodes:
            r = (e.model_extra or {}).get("target_radius")
            if r is not None:
                out.append((float(r), bool(e.success), float(e.return_)))
    return out


def distance_episodes(group: dict) -> list[tuple[float, bool, float]]:
    """Every episode of a condition's evaluations that recorded its target, its members' one after another."""
    return [e for m in group["members"] for e in member_distance_episodes(m)]


def _in_bin(radius: float, lo: float, hi: float, top: float) -> bool:
    return lo <= radius < hi or (hi == top and radius == hi)


T_ACROSS_SEEDS, WILSON_ONE_SEED = "t across seeds", "Wilson, one seed"


def distance_bins(group: dict) -> list[dict]:
    """A condition's success per distance bin (evaluate.TARGET_BINS), as the studies state a result: where two or
    more seeds (members) have episodes in the bin, each seed's success rate there, their mean and the 95%
    Student-t interval across seeds (stats.t_interval, clipped to [0, 1]); one seed: its rate and the 95% Wilson
    interval over its episodes (`ci_kind` says which). Pooling several seeds' episodes into one Wilson interval
    would count episodes of one policy as if they were independent draws of the condition: it hides how much seeds
    disagree. Each bin: {bin, lo, hi, n (episodes), successes, seeds, per_seed (rates), rate, ci, ci_kind}; rate and
    ci None where no seed had a target in the bin."""
    from vjepa_robot_lab.evaluation.evaluate import TARGET_BINS

    top = max(b[1] for b in TARGET_BINS.values())
    per_member = [member_distance_episodes(m) for m in group["members"]]
    out = []
    for name, (lo, hi) in TARGET_BINS.items():
        counts = []  # (successes, episodes) of each member with a target in the bin
        for eps in per_member:
            inside = [e for e in eps if _in_bin(e[0], lo, hi, top)]
            if inside:
                counts.append((sum(e[1] for e in inside), len(inside)))
        k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
        rates = [ki / ni for ki, ni in counts]
        row = {"bin": name, "lo": lo, "hi": hi, "n": n, "successes": k, "seeds": len(counts), "per_seed": rates}
        if len(counts) > 1:
            mean, clo, chi = t_interval(rates)
            row |= {"rate": mean, "ci": (max(0.0, clo), min(1.0, chi)), "ci_kind": T_ACROSS_SEEDS}
        elif counts:
            row |= {"rate": k / n, "ci": wilson_ci95(k, n), "ci_kind": WILSON_ONE_SEED}
        else:
            row |= {"rate": None, "ci": None, "ci_kind": None}
        out.append(row)
    return out


def distance_label(group: dict) -> str:
    """A condition's legend entry in the by-distance figure: its name and how its whiskers were made."""
    n = len(group["members"])
    how = f"{n} seeds: t-interval across seeds" if n > 1 else "1 seed: Wilson over its episodes"
    return group["condition_short"] + (" (plumbing check)" if group["plumbing"] else "") + f" [{how}]"


DISTANCE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
SCATTER_SPREAD = 0.012  # fraction of the distance axis between conditions' points: shared points are set apart


def distance_figure(groups: list[dict]):
    """Left: success rate per distance bin (near / middle / far from the arm's base, evaluate.TARGET_BINS) per
    condition: the mean of its seeds' rates with the 95% t-interval across seeds and each seed as a dot, or for a
    single seed its rate with the 95% Wilson interval over its episodes (distance_bins; the legend says which per
    condition), and n episodes (n=0 where a condition, or every condition, had no target in the bin); right: every
    episode's return against its target's distance, so a hole (a bin, or a few targets, the policy never reaches)
    shows as points at 0. Each condition's points are shifted sideways by a fixed small amount and drawn with their
    own marker, so episodes of several policies at one (distance, return) -- a return of 0 at the same target --
    all show. One legend for both panels, below them."""
    from vjepa_robot_lab.evaluation.evaluate import TARGET_BINS

    plt = _pyplot()
    shown = [(g, eps) for g in groups if (eps := distance_episodes(g))]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6))
    names = list(TARGET_BINS)
    width = 0.8 / max(len(shown), 1)
    colours = plt.cm.tab10.colors
    top = max(b[1] for b in TARGET_BINS.values())
    lo_all = min(b[0] for b in TARGET_BINS.values())
    dx = SCATTER_SPREAD * (top - lo_all)

    filled = [sum(_in_bin(e[0], lo, hi, top) for _, eps in shown for e in eps) for lo, hi in TARGET_BINS.values()]
    for j, (g, eps) in enumerate(shown):
        c = colours[j % len(colours)]
        marker = DISTANCE_MARKERS[j % len(DISTANCE_MARKERS)]
        for i, b in enumerate(distance_bins(g)):
            x = i + (j - (len(shown) - 1) / 2) * width
            if b["rate"] is None:
                if filled[i]:  # others had targets here, this condition none (an empty bin is named once, below)
                    ax.text(x, 1, "n=0", ha="center", va="bottom", fontsize=6, color=c)
                continue
            rate, (clo, chi) = 100 * b["rate"], b["ci"]
            ax.bar(x, rate, width * 0.9, color=c)
            ax.errorbar(x, rate, yerr=[[rate - 100 * clo], [100 * chi - rate]], color="black", capsize=3, lw=1)
            ax.plot([x], [rate], marker=marker, color=c, markeredgecolor="black", ms=4, ls="", clip_on=False)
            if b["seeds"] > 1:  # each seed's rate in the bin
                pts = [100 * r for r in b["per_seed"]]
                ax.scatter([x] * len(pts), pts, s=8, color="black", zorder=4, clip_on=False)
            seeds = f"\n{b['seeds']} seeds" if b["seeds"] > 1 else ""
            top_y = max([min(100 * chi, 100), *(100 * r for r in b["per_seed"])])
            ax.text(x, top_y + 2, f"{rate:.0f}%\nn={b['n']}{seeds}", ha="center", va="bottom", fontsize=6)
        shift = (j - (len(shown) - 1) / 2) * dx
        bx.scatter(
            [e[0] + shift for e in eps],
            [e[2] for e in eps],
            s=16,
            color=c,
            marker=marker,
            edgecolors="black",
            linewidths=0.3,
            alpha=0.85,
            label=distance_label(g),
            zorder=3 + j,
        )
    for i, count in enumerate(filled):
        if shown and count == 0:  # no condition had a target here: say so once, in the middle of the bin
            ax.text(i, 50, "no targets here\n(n=0)", ha="center", va="center", fontsize=7, color="dimgrey")
    ax.set_xticks(range(len(names)), [f"{n}\n{lo:.2f}-{hi:.2f} m" for n, (lo, hi) in TARGET_BINS.items()])
    ax.set_ylabel(
        "success rate (%): mean over seeds; whiskers: 95% t-interval\nacross seeds (dots: seeds), "
        "one seed: Wilson over its episodes",
        fontsize=8,
    )
    ax.set_ylim(0, 119)
    ax.set_title("Success by target distance from the arm's base", fontsize=9)
    for lo, _ in list(TARGET_BINS.values())[1:]:
        bx.axvline(lo, color="grey", ls=":", lw=1)
    bx.set_xlabel("target distance from the base (m)")
    bx.set_ylabel("episode return")
    bx.set_title(
        "Every episode: return against target distance\n(each condition's points shifted "
        f"{1000 * dx:.1f} mm from the next, so shared points all show)",
        fontsize=9,
    )
    if shown:
        fig.legend(
            *bx.get_legend_handles_labels(),
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(2, len(shown)),
            borderaxespad=0,
        )
    return fig


def plot_by_distance(groups: list[dict], path: Path) -> Path | None:
    """The by-distance figure, or None when no evaluation recorded its targets (nothing to draw)."""
    if not any(distance_episodes(g) for g in groups):
        return None
    return _save(distance_figure(groups), path)
