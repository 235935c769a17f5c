"""A progress display that needs nothing beyond the standard library: tqdm when it is installed, else
one line on stderr whenever the state changes. The SDK itself depends only on httpx, pydantic and numpy."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, description: str, enabled: bool = True, unit: str = "it") -> None:
        self.description = description
        self.enabled = enabled
        self.unit = unit  # what `done` counts (epoch, step, episode, run): tqdm's rate reads "<unit>/s"
        self._bar: Any = None
        self._last: tuple | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, done: float | None, total: float | None, state: str = "") -> None:
        if not self.enabled or (done, total, state) == self._last:
            return
        self._last = (done, total, state)
        try:
            from tqdm.auto import tqdm  # optional
        except ImportError:  # pragma: no cover - depends on the environment
            shown = f"{done}/{total} {self.unit}" if total else ("" if done is None else f"{done} {self.unit}")
            print(f"{self.description}: {state} {shown}".rstrip(), file=sys.stderr, flush=True)
            return
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.description, unit=self.unit, leave=True, dynamic_ncols=True)
        if total is not None and self._bar.total != total:
            self._bar.total = total
        if done is not None:
            self._bar.n = done
        self._bar.set_postfix_str(state, refresh=False)
        self._bar.refresh()
