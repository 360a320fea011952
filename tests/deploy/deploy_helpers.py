"""Shared by the deploy tests: plain HTTP GETs, `zero` flags read from the live `--help`,
and podman (the image the tests build once per session is conftest.py's `image`
fixture). Free ports and polling with a deadline: `support`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The image tests (test_image.py, test_compose.py) under podman (shared notes: containers.md).
BASE_IMAGE = os.environ.get("ZERO_BASE_IMAGE", "localhost/zero-base:bookworm")
IMAGE = "localhost/zero:test"
CONTAINERS_CONF = str(REPO / "scripts" / "containers.conf")


def image_skip_reason(*tools: str) -> str | None:
    """Why an image test is skipped, or None when it runs. CI (CI set) runs it even when a
    tool is missing, so that the test fails and names the setup to run."""
    if os.environ.get("ZERO_SKIP_IMAGE", "") not in ("", "0"):
        return "ZERO_SKIP_IMAGE is set: the image tests are skipped"
    missing = [t for t in ("podman", *tools) if shutil.which(t) is None]
    if missing and not os.environ.get("CI"):
        return f"{', '.join(missing)} not installed (run scripts/ci_image_setup.sh as root)"
    return None


def require_tools(*tools: str) -> None:
    """Fail (CI) when a tool the image tests need is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: CI must run `bash scripts/ci_image_setup.sh` first")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)
    p = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def build_image() -> str:
    """Build the zero image from this checkout as IMAGE (the base image first, once per
    machine: about a minute). Rebuilds reuse the layer cache: seconds while the
    image's sources are unchanged, about a minute when zero/ changed (its pip layer)."""
    require_tools("podman")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run(["bash", str(REPO / "scripts" / "ci_image_setup.sh")], check=True, timeout=900,
                       env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF, ZERO_BASE_IMAGE=BASE_IMAGE))
    podman("build", "--format", "docker", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
           "--label", "zero-test=1", "-t", IMAGE, str(REPO), timeout=600)
    # Earlier test builds, untagged now: drop them (the layer cache stays).
    podman("image", "prune", "--force", "--filter", "label=zero-test=1", check=False)
    return IMAGE


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def help_text(*command: str) -> str:
    """`zero <command> --help` from this checkout; fails the test when the command does not exist."""
    p = subprocess.run([sys.executable, "-m", "zero", *command, "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout, f"`zero {' '.join(command)} --help` exited {p.returncode}:\n{p.stderr}"
    return p.stdout


def flags_in_help(text: str) -> set[str]:
    """Every long option argparse lists in a --help text."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
