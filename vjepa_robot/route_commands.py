"""Commands that mirror a trainer route, generated from one table: each row names the command, the SDK builder it
sends (clients/vjepa_robot_client/_trainer_calls.py: the route's path, body and parser, written once) and how its
typed answer prints. The command's arguments and options are the builder's parameters (a parameter without a
default is an argument, one with a default an option `--name`; left at None, it is not passed, so the builder's
own default holds), its help the row's summary (else the builder's docstring); every such command also takes
--trainer-url, --store, --runs-dir, --token and --json (given by the CLI).

The command sends the builder's Call through the Trainer port's one generic method, `send`
(vjepa_robot/trainer_port.py): the service at --trainer-url, else the trainer's own FastAPI app in this process.
So a route answers the same in both modes, errors included: its 4xx is the SDK's typed error, one line, the same
exit code. A new route that answers at once gets its command from one row here (and a printer, where lines or a
table suit it better than JSON); no method on the port or its adapters, no function in cli.py.

Only routes that answer at once belong here. Those that start work (training, evaluation, datasets, bake-offs)
have commands of their own in cli.py: locally they run the job inline with its progress, not on the app's pool.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import typer

from vjepa_robot import output
from vjepa_robot.train_commands import SharedOptions, _unwrap
from vjepa_robot_client import _trainer_calls as api


@dataclass(frozen=True)
class RouteCommand:
    """One command: `vjepa-robot <group> <name>` sends `builder(...)` and prints its answer with `show`."""

    path: tuple[str, str]  # (group, name)
    builder: Callable[..., Any]  # an SDK builder returning a Call
    show: Callable[[Any, Any], None] | None = None  # (the typed answer, the Trainer port) -> prints it; None: JSON
    summary: str | None = None  # the command's help (default: the builder's docstring)
    help: dict[str, str] = field(default_factory=dict)  # a parameter's help


GROUPS = {  # the help of a command group the table makes (one the CLI already has keeps its own)
    "studies": "Studies: one run per seed, with intervals across seeds (through --trainer-url, or in process).",
}


# -- how answers print --------------------------------------------------------------------------------------------


def console():
    """A rich console that wraps at the terminal's width, but not at 80 columns when output is piped."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 240)


def interval(iv, pct: bool) -> str:
    """`0.015 [95% CI -0.04853, 0.07853] over 2 seed(s)`: a quantity across seeds (`-` without one)."""
    if iv is None or iv.mean is None:
        return "-"
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.4g}")
    ci = f" [95% CI {f(iv.ci95[0])}, {f(iv.ci95[1])}]" if iv.ci95 else ""
    return f"{f(iv.mean)}{ci} over {iv.n} seed(s)"


def print_study(study, trainer=None) -> None:
    """The study's runs and its intervals across seeds, headed by what its runs are (a stand-in named as one):
    the lines `train --seeds`, `eval STUDY_ID` and `studies show` end with. `trainer.wait(run_id)` gives the
    first run's record."""
    what = ""
    if trainer is not None and study.runs:
        try:  # every run of a study shares its features and encoder; the first run's record says which
            what = f": {output.condition(trainer.wait(study.runs[0].run_id))}"
        except Exception:  # the header then goes without it
            what = ""
    typer.echo(f"study {study.study_id} ({study.kind}, seeds {study.seeds}){what}: {study.status.value}")
    for r in study.runs:
        sr = (
            ""
            if r.success_rate is None
            else f", success {100 * r.success_rate:.0f}%"
            + (f" [{100 * r.success_ci95[0]:.0f}, {100 * r.success_ci95[1]:.0f}]" if r.success_ci95 else "")
        )
        fm = "-" if r.final_metric is None else f"{r.final_metric:.4g}"
        typer.echo(
            f"  seed {r.seed}: {r.run_id} {r.status.value}, {study.metric} {fm}{sr}"
            + (f" ({r.error})" if r.error else "")
        )
    typer.echo(f"  {study.metric}: {interval(study.final, pct=False)}")
    if study.success is not None:
        typer.echo(f"  success: {interval(study.success, pct=True)}")


def show_study(study, trainer) -> None:
    """As print_study, the header's run record read with GET /runs/{id} (HttpTrainer.wait would draw a progress
    bar for it)."""
    from types import SimpleNamespace

    print_study(study, SimpleNamespace(wait=lambda run_id: trainer.send(api.run(run_id))))


def show_studies(studies, trainer) -> None:
    """One row a study: its id, kind, status, seeds, and its final metric and success across seeds."""
    from rich.table import Table

    if not studies:
        typer.echo("no studies yet: vjepa-robot train bc DATASET --seeds 0,1,2")
        return
    table = Table("study id", "kind", "status", "seeds", "final metric", "success")
    for s in studies:
        final = f"{s.metric} {interval(s.final, pct=False)}"
        success = "-" if s.success is None else interval(s.success, pct=True)
        table.add_row(s.study_id, s.kind, s.status.value, ",".join(map(str, s.seeds)), final, success)
    console().print(table)


# -- the table ----------------------------------------------------------------------------------------------------

ROUTE_COMMANDS: tuple[RouteCommand, ...] = (
    RouteCommand(
        ("studies", "list"),
        api.studies,
        show_studies,
        summary="Every study (GET /studies): id, kind, status, seeds, final metric and success across seeds.",
    ),
    RouteCommand(
        ("studies", "show"),
        api.get_study,
        show_study,
        summary="One study (GET /studies/{id}): every run, and the mean and 95% interval across its seeds.",
        help={"study_id": "A study id (vjepa-robot studies list)."},
    ),
)


# -- commands from rows -------------------------------------------------------------------------------------------

RunRoute = Callable[[RouteCommand, dict[str, Any], dict[str, Any]], None]  # (row, builder args, shared values)


def _option_type(annotation: Any) -> type:
    """`str | Task` -> str, `int | None` -> int: what the option parses (the builder validates the rest)."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) is not None else ()
    if str in args:
        return str
    t = _unwrap(annotation)
    if t in (int, float, str, bool):
        return t
    raise TypeError(f"a route command's parameter must be an int, float, str or bool, not {annotation!r}")


def builder_parameters(row: RouteCommand) -> list[inspect.Parameter]:
    """The builder's parameters as typer arguments (no default) and options (a default; None when optional)."""
    hints = typing.get_type_hints(row.builder)
    params = []
    for p in inspect.signature(row.builder).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        t, help_ = _option_type(hints[p.name]), row.help.get(p.name)
        if p.default is p.empty:
            spec, annotation = typer.Argument(..., help=help_, show_default=False), t
        else:
            spec = typer.Option(p.default, f"--{p.name.replace('_', '-')}", help=help_)
            annotation = t if p.default is not None else t | None
        params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=spec, annotation=annotation))
    return params


def make_route_command(row: RouteCommand, shared: SharedOptions, run: RunRoute) -> Callable[..., None]:
    """A typer command for one row: collects the builder's arguments (dropping options left at None) and the
    shared options' values, and hands them to `run`."""
    own = builder_parameters(row)
    names = [p.name for p in own]

    def command(**values: Any) -> None:
        run(row, {k: values[k] for k in names if values[k] is not None}, {k: values[k] for k in shared})

    params = own + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        for name, (annotation, option) in shared.items()
    ]
    command.__name__ = command.__qualname__ = "_".join(row.path).replace("-", "_")
    command.__doc__ = row.summary or inspect.getdoc(row.builder)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def add_route_commands(
    app: typer.Typer, groups: dict[str, typer.Typer], shared: SharedOptions, run: RunRoute
) -> dict[tuple[str, str], Callable[..., None]]:
    """One command per row, in its group (a group the CLI does not have yet is made, with GROUPS' help)."""
    made = {}
    for row in ROUTE_COMMANDS:
        group, name = row.path
        if group not in groups:
            groups[group] = typer.Typer(help=GROUPS.get(group), no_args_is_help=True)
            app.add_typer(groups[group], name=group)
        made[row.path] = groups[group].command(name)(make_route_command(row, shared, run))
    return made


def as_json(answer: Any) -> str:
    """The answer as the route sends it (a model, a list of models, or plain JSON)."""

    def plain(x: Any) -> Any:
        if hasattr(x, "model_dump"):
            return x.model_dump(mode="json", by_alias=True)
        return [plain(v) for v in x] if isinstance(x, list) else x

    return json.dumps(plain(answer), indent=1, default=str)
