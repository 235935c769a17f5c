"""How a job refuses a request before it starts: the job layer (services/trainer/jobs.py) and the run kinds'
hooks (run_kinds.py) raise Refused; the trainer service answers its status code with its detail."""

from __future__ import annotations


class Refused(Exception):
    """A request a job will not start; status_code is the HTTP status the service answers (400, 404, 409, 422)."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail
