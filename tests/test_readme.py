"""The README shows what the project runs: its quickstart is the tested example, its commands are what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quickstart_in_the_readme_is_the_tested_example():
    example = (ROOT / "examples" / "quickstart.py").read_text().strip()
    blocks = [b.strip() for b in re.findall(r"```python\n(.*?)```", README, re.S)]
    assert example in blocks, "README's SDK quickstart differs from examples/quickstart.py (which the tests run)"


def test_ci_runs_the_readme_test_command():
    test_line = next(line for line in README.splitlines() if "pytest" in line and "pip install" in line)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci and '".[test]"' in test_line and ".[test]" in ci


def test_no_citation_of_notes_the_repository_does_not_carry():
    cited = {m for m in re.findall(r"\b([A-Z]+\.md)\b", README)}
    for name in cited:
        assert list(ROOT.rglob(name)), f"README cites {name}, which is not in the repository"
