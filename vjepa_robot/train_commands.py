"""`vjepa-robot train <kind>`: one command per trained run kind, generated from the run-kind registry
(vjepa_robot_lab/records/run_kinds.py: RunKind.command names the fields) and the kind's request model.

Each option's help is the request field's description plus its choices, its default the model's; an option the
kind sends only when given defaults to None and is dropped when None (never when merely falsy: `--parallel-envs 0`
reaches the request, which refuses it). So a new algorithm gets its command from its registration, and a changed
default or description reaches `--help` with nothing else to edit.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

# (annotation, typer parameter) of options every train command has, given by the CLI: --seeds, --n-seeds, the
# trainer/encoder/store options and --wandb
SharedOptions = dict[str, tuple[Any, Any]]
RunTrain = Callable[[Any, dict[str, Any], dict[str, Any]], None]  # (kind, request fields, shared values) -> None


def _unwrap(annotation: Any) -> Any:
    """`int | None` -> int (a request field's type, as an option takes it)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_choices(field: FieldInfo) -> list[str] | None:
    """The allowed values of an enum or Literal field (None for other fields)."""
    t = _unwrap(field.annotation)
    if isinstance(t, type) and issubclass(t, Enum):
        return [str(e.value) for e in t]
    if typing.get_origin(t) is typing.Literal:
        return [str(a) for a in typing.get_args(t)]
    return None


def option_type(field: FieldInfo) -> type:
    """What the option parses: str for choices (the request validates them, with a one-line error), else the
    field's own int / float / str / bool."""
    if field_choices(field) is not None:
        return str
    t = _unwrap(field.annotation)
    if t in (int, float, str, bool):
        return t
    raise TypeError(f"a train option must be an int, float, str, bool, enum or Literal field, not {t!r}")


def default_of(field: FieldInfo) -> Any:
    value = field.get_default(call_default_factory=True)
    return value.value if isinstance(value, Enum) else value


def field_help(model: type[BaseModel], name: str, sent_always: bool) -> str:
    """The option's help: the field's description, its choices, and its default (or who fills it when left out)."""
    field = model.model_fields[name]
    parts = [field.description.rstrip(".") + "." if field.description else ""]
    choices = field_choices(field)
    if choices and not (field.description and all(c in field.description for c in choices)):
        parts.append(" | ".join(choices) + ".")
    default = default_of(field)
    if not sent_always and default is not None:
        protocol = "protocol" in model.model_fields and name != "protocol"
        parts.append(f"Default {default}" + (" (or the --protocol's)." if protocol else "."))
    return " ".join(p for p in parts if p)


def command_parameters(kind, shared: SharedOptions) -> list[inspect.Parameter]:
    """The command's parameters, in the order RunKind.command gives (arguments, options, then the shared ones)."""
    spec, model = kind.command, kind.request
    params = []
    for name in spec.arguments:
        field = model.model_fields[name]
        arg = typer.Argument(..., help=field.description, show_default=False)
        kw = inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(name, kw, default=arg, annotation=option_type(field)))
    for name in spec.options:
        field = model.model_fields[name]
        always = name in spec.always
        t = option_type(field)
        default = default_of(field) if always else None
        option = typer.Option(default, f"--{name.replace('_', '-')}", help=field_help(model, name, always))
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=t if always else t | None
            )
        )
    for name, (annotation, option) in shared.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def make_train_command(kind, shared: SharedOptions, run: RunTrain) -> Callable[..., None]:
    """A typer command for `train <kind.name>`: collects the request fields (dropping options left at None) and
    the shared options' values, and hands them to `run`."""
    spec = kind.command
    fields_of = (*spec.arguments, *spec.options)

    def command(**values: Any) -> None:
        fields = {k: values[k] for k in fields_of if values[k] is not None}
        run(kind, fields, {k: values[k] for k in shared})

    params = command_parameters(kind, shared)
    command.__name__ = command.__qualname__ = f"train_{kind.name}"
    command.__doc__ = spec.summary
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def add_train_commands(app: typer.Typer, shared: SharedOptions, run: RunTrain) -> dict[str, Callable[..., None]]:
    """One command per trained run kind that declares one (the registry's order)."""
    from vjepa_robot_lab.records.run_kinds import trained_kinds

    made = {}
    for kind in trained_kinds():
        if kind.command is not None:
            made[kind.name] = app.command(kind.name)(make_train_command(kind, shared, run))
    return made
