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


def test_the_two_commands_come_first_and_every_relative_link_resolves():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2 and "vjepa-robot demo" in first_block[0] and "pytest" in first_block[1]
    assert README.index(first_block[0]) < 200  # right under the title
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_quickstart_shows_how_to_point_it_at_cli_started_services():
    usage = README[README.index("From your own scripts") :]
    for needed in (
        "vjepa-robot serve encoder",
        "vjepa-robot serve trainer",
        "VJEPA_ROBOT_TRAINER_URL=",
        "VJEPA_ROBOT_ENCODER_URL=",
        "python examples/quickstart.py",
    ):
        assert needed in usage, needed


def test_the_demo_time_in_the_readme_is_the_one_in_its_help():
    from vjepa_robot.cli import DEMO_TIME

    assert "{" not in DEMO_TIME and DEMO_TIME in README, DEMO_TIME
