"""The README's test command is exactly what .ci/run runs."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)\n```", quick, re.S)
    assert "python -m pytest -q" in blocks, blocks
    last = [line for line in ci.strip().splitlines() if line and not line.startswith("#")][-1]
    assert last == "python -m pytest -q"
