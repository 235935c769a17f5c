"""The results report: every condition run, aggregated over seeds, with plots, probe tables and rollout GIFs.

    path = write_report(read_records(runs_dir), load_probes(runs_dir), Path("report"), extra_notes=load_notes(runs_dir))

One module per job:
    rows.py      what a run is (features, encoder, readout, condition names) and the rows: per evaluation, per
                 condition (seeds aggregated), per BC/SAC run, per probe target; numbers for people
    plots.py     the pictures (matplotlib Agg): success bars, BC loss curves, SAC learning curves
    markdown.py  the title, the console summary and README.md
    inputs.py    stored inputs: run records, the report's notes (reading never creates anything)

Honesty rules this package enforces:
- Every row names its features exactly, and for `vjepa2` the encoder in the row itself: preset or checkpoint,
  random-init or pretrained (RunLineage.random_init, recorded from the encoder's /info where the encoder was
  loaded), embedding dim, input size; and its readout in a column of its own. A random-init encoder is a
  stand-in: its rows, bars, curves and GIF captions say "plumbing check, not a V-JEPA 2 result", and so does the
  title when no pretrained encoder was run.
- Runs that share a condition (kind, features, encoder, readout, dataset, training config except seed and study
  id, and the same evaluation protocol) are one row: the mean over seeds with a 95% t-interval across seeds, the
  per-seed rates with their own 95% Wilson intervals beside it, and the number of seeds. One seed gives its
  Wilson interval.
- Numbers are rounded for people ("20% [8, 42]"); a Wilson bound is exactly 0 (or 1) at 0 (or n) successes.

Every public function takes typed RunRecords or stored dicts (converted by runs.migrate).
"""

from __future__ import annotations

from vjepa_robot_lab.evaluation.stats import t_interval, wilson_ci95
from vjepa_robot_lab.report.inputs import NOTES_FILE, load_notes, read_records, read_runs, save_notes
from vjepa_robot_lab.report.markdown import probe_table, summary_lines, title, write_report
from vjepa_robot_lab.report.plots import (
    BC_LOSS_PNG,
    SAC_CURVES_PNG,
    SUCCESS_PNG,
    bar_labels,
    bc_loss_figure,
    kept_markers,
    plot_bc_losses,
    plot_sac_curves,
    plot_success,
    success_figure,
    success_title,
)
from vjepa_robot_lab.report.rows import (
    BASELINE_NAMES,
    FEATURE_NAMES,
    PLUMBING,
    as_record,
    bc_curves,
    condition_name,
    condition_rows,
    encoder_info,
    evaluation_rows,
    feature_lineage,
    is_plumbing,
    num,
    pct,
    probe_rows,
    short_name,
    short_weights,
    weights_of,
)

__all__ = [
    "write_report",
    "condition_name",
    "condition_rows",
    "evaluation_rows",
    "encoder_info",
    "is_plumbing",
    "feature_lineage",
    "plot_success",
    "plot_bc_losses",
    "plot_sac_curves",
    "read_runs",
    "read_records",
    "load_notes",
    "save_notes",
    "pct",
    "num",
    "wilson_ci95",
    "t_interval",
    "probe_rows",
    "probe_table",
    "summary_lines",
    "title",
    "short_name",
    "short_weights",
    "weights_of",
    "bc_curves",
    "as_record",
    "bar_labels",
    "success_title",
    "kept_markers",
    "success_figure",
    "bc_loss_figure",
    "PLUMBING",
    "BASELINE_NAMES",
    "FEATURE_NAMES",
    "NOTES_FILE",
    "SUCCESS_PNG",
    "BC_LOSS_PNG",
    "SAC_CURVES_PNG",
]
