"""Error answers shared by the services: every error is JSON {"detail": "<one string>"}, and none echoes the input.

FastAPI's own handlers answer a validation error with `detail` as a list of dicts that carry each bad `input` (a
128 MB body came back as a 134 MB 422), and fail with a 500 when that input holds NaN or Infinity (JSON has neither,
so the answer cannot be written; the failed answer also dropped the keep-alive connection). These handlers name each
field and what is wrong with it, never its value, and turn any non-string HTTPException detail into a string.

    install_error_handlers(app)
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MAX_DETAIL_CHARS = 2000  # an error message names the problem; it is never a copy of the request


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """'field: what is wrong; other.field: ...' from pydantic's errors, without their `input` values."""
    msgs = []
    for e in errors:
        if e.get("type") == "json_invalid":  # loc is ("body", character offset)
            where = e.get("loc", ())[-1] if e.get("loc") else "?"
            why = (e.get("ctx") or {}).get("error", "")
            msgs.append(f"body is not valid JSON (at character {where}{': ' + str(why) if why else ''})")
            continue
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        msgs.append(f"{loc}: {msg}" if loc else msg)
    return _clip("; ".join(m for m in msgs if m) or "invalid request")


def detail_string(detail: Any) -> str:
    """Any HTTPException detail as one string (a list or dict of messages is joined, never kept structured)."""
    if isinstance(detail, str):
        return _clip(detail)
    if isinstance(detail, list) and all(isinstance(e, dict) and "msg" in e for e in detail):
        return validation_detail(detail)
    if isinstance(detail, list | tuple):
        return _clip("; ".join(map(str, detail)))
    try:
        return _clip(json.dumps(detail, default=str))
    except (TypeError, ValueError):
        return _clip(str(detail))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": validation_detail(exc.errors())})


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    return JSONResponse(status_code=exc.status_code, content={"detail": detail_string(exc.detail)}, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """422s that name fields but never echo the body; every HTTPException's detail a string."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
