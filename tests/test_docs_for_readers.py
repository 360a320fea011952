"""The docs for their readers (issue 22 items 4e and 4j), checked so they stay fixed:
they point only inside the repository, the README's flag table is one table listing every
`zero run` flag, BENCHMARKS is one current report (no issue numbers, each benchmark
once), pyproject's license is the SPDX string, and the README says what `.ci/run`
installs with apt (and that it needs root), with a path that needs no root."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from zero.cli import RUN_FLAGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_point_only_inside_the_repository() -> None:
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text and "/work/shared" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


def test_the_flag_table_is_one_table_with_every_run_flag() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| flag |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    table = "\n".join(lines[start:end])
    missing = [f.name for f in RUN_FLAGS if f"`--{f.name}`" not in table]
    assert missing == [], f"not in the README's flag table (or after a line that ends it): {missing}"


def test_benchmarks_is_one_current_report() -> None:
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    assert not re.search(r"\bissues? #?\d+", text, re.I), re.search(r".*\bissues? #?\d+.*", text, re.I)
    headings = re.findall(r"^#{2,3} (.+)$", text, re.M)
    assert len(headings) == len(set(headings)), [h for h in headings if headings.count(h) > 1]


def test_pyproject_license_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project["license"], str), project["license"]


def test_the_readme_says_what_ci_installs_and_a_path_without_root() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    packages: set[str] = set()
    for script in (ROOT / "scripts").glob("ci_*_setup.sh"):
        for line in script.read_text().splitlines():
            if "apt-get install" in line:
                packages.update(w for w in line.split("install", 1)[1].split()
                                if not w.startswith(("-", '"', "$")))
    for script in (ROOT / "scripts").glob("ci_*_setup.sh"):
        packages.update(re.findall(r"missing\+=\(([\w.-]+)\)", script.read_text()))
    assert packages, "no apt packages found in scripts/ci_*_setup.sh"
    unnamed = sorted(p for p in packages if p.removesuffix("-driver") not in quick and p not in quick)
    assert unnamed == [], f"README's Quick start does not name what .ci/run installs: {unnamed}"
    assert "needs root" in quick
    assert ".venv/bin/pip install -e '.[test]'" in quick and "python -m pytest -q" in quick
