"""Print pyproject.toml's requirements, one per line, for `pip install -c constraints.txt -r -` (deploy/Dockerfile).

    python requirements.py            # the core dependencies (what both images need)
    python requirements.py trainer    # what the `trainer` extra adds (extras naming vjepa-robot itself are expanded)

The images install their dependencies from pyproject.toml + the lock alone, before any source or README is copied,
so neither a code nor a documentation edit reinstalls them: `pip install ".[trainer]"` would build the project,
and setuptools needs the README named in pyproject.toml for that. Standard library only (tomllib, Python >= 3.11).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().with_name("pyproject.toml")
if not PYPROJECT.exists():  # run from the repository (deploy/requirements.py) rather than the image's /app
    PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(extra: str | None = None, pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    if extra is None:
        return list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"unknown extra {extra!r}: pyproject.toml has {', '.join(sorted(extras))}")
    out: list[str] = []
    for req in extras[extra]:
        self_ref = re.fullmatch(rf"{re.escape(project['name'])}\[([\w,\s-]+)\]", req.strip())
        if self_ref:  # e.g. all = ["vjepa-robot[trainer]"]
            for name in self_ref.group(1).split(","):
                out += [r for r in requirements(name.strip(), pyproject) if r not in out]
        elif req not in out:
            out.append(req)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1] if len(sys.argv) > 1 else None)))
