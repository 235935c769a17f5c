"""One-line, plain-language messages for bad input, and the CLI's exit codes.

`invalid_input(...)` turns a pydantic ValidationError (raised where the CLI builds a request) or a service's 422
answer (FastAPI's list of {loc, msg, input, ctx}, or the trainer's "field: msg; field: msg" string) into one line
that names the option, the value given and what is allowed, e.g.

    --episodes -1 is out of range: it must be between 1 and 10000
    --features 'pixels' is not one of the choices: vjepa2, state or random

Imports only pydantic (no typer, no torch): the demo validates its configuration with it before starting services.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# Exit codes, the same in local and --trainer-url modes (documented in `vjepa-robot --help`).
EXIT_FAILED = 1  # the work ran and failed (training / evaluation failed, weights not loadable, fetch failed)
EXIT_BAD_INPUT = 2  # the command was wrong: a bad option value, an unknown dataset / run, a refused request
EXIT_UNREACHABLE = 3  # a service (encoder / trainer) could not be reached through the SDK's retry policy

_BOUND_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def flag(field: str, flags: Mapping[str, str] | None = None) -> str:
    """The CLI spelling of a request field: image_size -> --image-size (or what `flags` maps it to)."""
    if flags and field in flags:
        return flags[field]
    return "--" + field.replace("_", "-")


def _bounds(model: Any, field: str) -> dict[str, Any]:
    """ge/gt/le/lt declared on a pydantic model's field (annotated_types metadata), for the full allowed range."""
    info = getattr(model, "model_fields", {}).get(field) if model is not None else None
    out: dict[str, Any] = {}
    for m in getattr(info, "metadata", None) or []:
        for k in _BOUND_WORDS:
            if getattr(m, k, None) is not None:
                out[k] = getattr(m, k)
        if getattr(m, "min_length", None) is not None:
            out["min_length"] = m.min_length
        if getattr(m, "max_length", None) is not None:
            out["max_length"] = m.max_length
    return out


def _range_text(bounds: Mapping[str, Any]) -> str:
    lo = ("ge", bounds["ge"]) if "ge" in bounds else ("gt", bounds["gt"]) if "gt" in bounds else None
    hi = ("le", bounds["le"]) if "le" in bounds else ("lt", bounds["lt"]) if "lt" in bounds else None
    if lo and hi and lo[0] == "ge" and hi[0] == "le":
        return f"between {lo[1]} and {hi[1]}"
    return " and ".join(f"{_BOUND_WORDS[k]} {v}" for k, v in (lo, hi) if k)


def _one(err: Mapping[str, Any], model: Any, flags: Mapping[str, str] | None) -> str:
    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
    field = loc[0] if loc else ""
    name = flag(field, flags) if field else "the request"
    kind, ctx, msg = err.get("type", ""), err.get("ctx") or {}, str(err.get("msg", "invalid"))
    has_input = "input" in err and kind != "missing"
    given = (
        f"{name} {err['input']!r}"
        if has_input and isinstance(err.get("input"), str)
        else f"{name} {err.get('input')}"
        if has_input
        else name
    )
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        rng = _range_text({**_bounds(model, field), **{k: v for k, v in ctx.items() if k in _BOUND_WORDS}})
        return f"{given} is out of range: it must be {rng}"
    if kind in ("enum", "literal_error"):
        choices = str(ctx.get("expected", "")).replace("'", "")
        return f"{given} is not one of the choices: {choices}"
    if kind in ("too_short", "too_long"):
        b = _bounds(model, field)
        lo, hi = b.get("min_length", ctx.get("min_length")), b.get("max_length", ctx.get("max_length"))
        allowed = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else f"at least {lo}"
            if lo is not None
            else f"at most {hi}"
        )
        return f"{given} has {ctx.get('actual_length', '?')} items: it must have {allowed}"
    if kind == "missing":
        return f"{name} is required"
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"{given} is not valid: {_plain(msg)}"
    if kind == "value_error":  # a model/field validator's own sentence, already plain
        text = msg.removeprefix("Value error, ")
        return f"{name}: {text}" if field else text
    return f"{given}: {_plain(msg)}"


def _plain(msg: str) -> str:
    return msg.replace("Input should be", "it must be").replace("Value error, ", "")


def invalid_input(source: Any, *, model: Any = None, flags: Mapping[str, str] | None = None) -> str:
    """One line for a pydantic ValidationError, a FastAPI 422 detail list, or the trainer's 422 detail string.

    model: the request model (for the full allowed range, e.g. "between 1 and 10000" where pydantic reports only
    the bound that was crossed); flags: request field -> the CLI option that sets it, where they differ.
    """
    errors: Iterable[Mapping[str, Any]] | None = None
    if hasattr(source, "errors") and callable(source.errors):
        errors = source.errors(include_url=False)
    elif isinstance(source, list):
        errors = [e for e in source if isinstance(e, Mapping)]
    if errors is not None:
        return "; ".join(dict.fromkeys(_one(e, model, flags) for e in errors)) or "invalid request"
    # the trainer's handler sends "episodes: Input should be greater than or equal to 1; task: ..." (a string)
    parts = []
    for part in str(source).split("; "):
        m = re.match(r"^([A-Za-z_][\w.]*): (.*)$", part)
        if m:
            field = m.group(1).split(".")[0]
            parts.append(f"{flag(field, flags)}: {_plain(m.group(2))}")
        else:
            parts.append(_plain(part))
    return "; ".join(parts)
