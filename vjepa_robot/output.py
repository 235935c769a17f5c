"""What `train` and `eval` print in a terminal: a check that the encoder answers before any work starts, the
embedding of a dataset with its own progress bar, and one summary line at the end (`--json`: the full record).

Every line that carries a result of a random-init encoder names it as a stand-in. Kept apart from cli.py so the
commands stay thin: each calls one of these at its start or its end.
"""

from __future__ import annotations

import json
from typing import Any

STAND_IN_NOTE = "a random-init stand-in: a plumbing check, not a V-JEPA 2 result"
JSON = {"on": False}  # `--json` (a global option, also accepted after train / eval): the full record, not a line


# ----------------------------------------------------------------------------------------------------------------
# Before the work: is the encoder there?
# ----------------------------------------------------------------------------------------------------------------


def encoder_missing(url: str, tries: int = 3, timeout: float = 1.0) -> str | None:
    """None when the encoder at `url` answers GET /healthz, else the one-line message to exit with (code 3).

    A few quick looks (~3 s in all), not the SDK's minute of retries: a command that needs the encoder says so
    before it creates a run, so no failed run is left behind."""
    import time

    import httpx

    for attempt in range(tries):
        try:
            if httpx.get(f"{url.rstrip('/')}/healthz", timeout=timeout).status_code < 500:
                return None
        except httpx.HTTPError:
            pass
        if attempt + 1 < tries:
            time.sleep(0.5)
    port = url.rsplit(":", 1)[-1].strip("/") if url.count(":") >= 2 else "8001"
    return (
        f"no encoder answers at {url} (vjepa2 features need one): start it with `vjepa-robot serve encoder "
        f"--preset tiny --port {port}` (or --preset vitl for V-JEPA 2 itself), or point --encoder-url at one"
    )


def embed_first(encoder_url: str, token: str | None, dataset: str, readout: str, grid_size: int) -> None:
    """Have the encoder embed what a vjepa2 BC run reads (mean embeddings, or the g x g grids for the attentive
    readout) with a progress bar, before the run starts; a no-op where the store already holds them. Errors are
    left to the run itself (an unknown dataset gets the run's own refusal)."""
    from vjepa_robot_client import EncoderClient
    from vjepa_robot_client.errors import VjepaRobotError

    pool = {"pool": "grid", "grid_size": grid_size} if readout == "attentive" else {}
    try:
        with EncoderClient(encoder_url, token=token) as client:
            client.encode_dataset_and_wait(dataset, progress=True, **pool)
    except VjepaRobotError:
        pass


# ----------------------------------------------------------------------------------------------------------------
# After the work: one line
# ----------------------------------------------------------------------------------------------------------------


def _record(run: Any):
    from vjepa_robot_lab.report.rows import as_record

    if hasattr(run, "model_dump") and not hasattr(run, "run_id"):
        run = run.model_dump(by_alias=True)
    return as_record(run)


def condition(run: Any) -> str:
    """The run's condition in words, a stand-in named as one."""
    from vjepa_robot_lab.report.rows import PLUMBING, condition_name

    rec = _record(run)
    name = condition_name(rec).replace(f" [{PLUMBING}]", "")
    return name + (f" ({STAND_IN_NOTE})" if rec.is_stand_in else "")


def run_line(run: Any) -> str:
    """`bc-1a2b succeeded: BC on state (jac-150), kept epoch 37 of 100, validation MSE 1.2e-02`."""
    rec = _record(run)
    m = rec.metrics.model_dump() if hasattr(rec.metrics, "model_dump") else dict(rec.metrics or {})
    head = f"{rec.run_id} {rec.status.value}: {condition(rec)}"
    if rec.status.value != "succeeded":
        return head + (f"; error: {rec.error}" if rec.error else "")
    if m.get("selected_epoch") is not None or m.get("val_loss") is not None:  # a run kept by validation (BC)
        best = m.get("best_val_loss") if m.get("best_val_loss") is not None else m.get("val_loss")
        kept = m.get("selected_epoch")
        return (
            head
            + (f", kept epoch {kept} of {m.get('epoch')}" if kept else f", {m.get('epoch')} epochs")
            + (f", validation MSE {best:.2e}" if best is not None else "")
            + f"; evaluate it: vjepa-robot eval {rec.run_id}"
        )
    final = m.get("final_eval") or {}
    parts = [f"{m.get('env_steps')} env steps"] if m.get("env_steps") else []
    if final.get("mean_return") is not None:
        parts.append(f"final return {final['mean_return']:.1f}")
    if final.get("success_rate") is not None:
        parts.append(f"success {100 * final['success_rate']:.0f}%")
    return head + (", " + ", ".join(parts) if parts else "")


def eval_line(evaluation: dict, run: Any = None) -> str:
    """`bc-1a2b evaluated: success 20% [6, 51] over 10 episodes, mean return 12.3 (near 40%, ...); BC on ...`."""
    from vjepa_robot_lab.report.rows import pct

    ev = evaluation
    who = ev.get("run_id") or "?"
    if ev.get("status") != "succeeded":
        return f"evaluation of {who} {ev.get('status')}: {ev.get('error')}"
    episodes = ev.get("episodes") or []
    n = len(episodes) or (ev.get("request") or {}).get("episodes")
    ci = ev.get("success_ci95")
    if ci is None and episodes:  # records that did not store it: the Wilson interval over their episodes
        from vjepa_robot_lab.evaluation.stats import wilson_ci95

        ci = wilson_ci95(sum(bool(e.get("success")) for e in episodes), len(episodes))
    result = (
        f"success {pct(ev.get('success_rate'), ci)}, " if ev.get("success_rate") is not None else ""
    ) + f"mean return {ev.get('mean_return'):.1f} over {n} episodes"
    bins = ev.get("by_distance") or []
    if bins and any(b.get("success_rate") is not None for b in bins):
        result += " (" + ", ".join(f"{b['bin']} {100 * b['success_rate']:.0f}% of {b['episodes']}" for b in bins) + ")"
    name = f"; {condition(run)}" if run is not None else ""
    return f"{who} evaluated: {result}{name}"


def print_run(run: Any) -> None:
    """The summary line, or with --json the whole run record."""
    print(json.dumps(_plain(run), indent=1, default=str) if JSON["on"] else run_line(run), flush=True)


def print_eval(evaluation: dict, run: Any = None) -> None:
    """The summary line, or with --json the whole evaluation record."""
    print(json.dumps(_plain(evaluation), indent=1, default=str) if JSON["on"] else eval_line(evaluation, run))


def _plain(obj: Any) -> Any:
    return obj.model_dump(mode="json", by_alias=True) if hasattr(obj, "model_dump") else obj


# ----------------------------------------------------------------------------------------------------------------
# Stratified evaluation counts
# ----------------------------------------------------------------------------------------------------------------


def stratified_episodes(episodes: int | None, targets: str | None) -> tuple[int | None, str | None]:
    """(the episode count to run, a note or None): stratified targets fill 3 distance bins equally, so a count
    that is not a multiple of 3 is rounded up (4 -> 6), and the note says so."""
    if targets != "stratified" or episodes is None or episodes < 1 or episodes % 3 == 0:
        return episodes, None
    up = episodes + (3 - episodes % 3)
    return up, (
        f"note: --targets stratified fills 3 distance bins (near, middle, far) equally: running {up} episodes "
        f"({up // 3} a bin) for --episodes {episodes}"
    )
