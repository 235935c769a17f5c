"""Typed exceptions of the SDK. Every HTTP error carries the server's own message (its JSON `detail`).

VjepaRobotError                 base: anything the SDK raises on purpose
├── BadRequest                  4xx: the request was refused; fix the request (400, 409, 422, ...)
│   ├── Unauthorized            401/403: missing or wrong bearer token
│   └── NotFound                404: no such dataset / run / route
├── ServerError                 5xx other than 503: the service failed
│   └── ServiceUnavailable      503 (and 429) still answered after every retry
├── ConnectionFailed            could not connect, after every retry
├── RequestTimeout              the service took longer than `timeout`
├── WaitTimeout                 wait()/wait_eval()/wait_dataset() ran past its own timeout
└── DatasetEncodeFailed         encode_dataset_and_wait(): the encoder's dataset job failed
"""

from __future__ import annotations

from typing import Any


class VjepaRobotError(Exception):
    """Base of every error the SDK raises. `status_code` and `detail` are set for HTTP errors."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: Any = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url


class BadRequest(VjepaRobotError):
    """The service refused the request (4xx); `detail` says why."""


class Unauthorized(BadRequest):
    """401/403: pass token=... (the service's VJEPA_ROBOT_TOKEN) or check it."""


class NotFound(BadRequest):
    """404: the dataset, run or route does not exist."""


class ServerError(VjepaRobotError):
    """5xx: the service failed while handling the request."""


class ServiceUnavailable(ServerError):
    """503 (or 429): the service stayed busy through every retry."""


class ConnectionFailed(VjepaRobotError):
    """No connection could be made to the service through every retry."""


class RequestTimeout(VjepaRobotError):
    """The service did not answer within the client's timeout."""


class WaitTimeout(VjepaRobotError, TimeoutError):
    """A wait_* helper gave up before the run / evaluation / dataset reached a terminal state."""


class DatasetEncodeFailed(VjepaRobotError):
    """The encoder's dataset-embedding job ended `failed`; the message carries the job's own error."""


def error_for_status(status_code: int, message: str, **kwargs: Any) -> VjepaRobotError:
    """The exception class for an HTTP status code."""
    if status_code in (401, 403):
        cls: type[VjepaRobotError] = Unauthorized
    elif status_code == 404:
        cls = NotFound
    elif status_code in (429, 503):
        cls = ServiceUnavailable
    elif 400 <= status_code < 500:
        cls = BadRequest
    else:
        cls = ServerError
    return cls(message, status_code=status_code, **kwargs)
