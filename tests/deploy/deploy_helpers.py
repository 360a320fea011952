"""Shared by the deploy tests: free ports, polling with a deadline, plain HTTP GETs,
and `zero run` flags read from the live `--help`."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held open together so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def help_text(*command: str) -> str | None:
    """`zero <command> --help` from this checkout, or None when the command does not exist."""
    p = subprocess.run([sys.executable, "-m", "zero", *command, "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    return p.stdout if p.returncode == 0 else None


def flags_in_help(text: str) -> set[str]:
    """Every long option argparse lists in a --help text."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def flag_help(text: str, flag: str) -> str:
    """The help paragraph of one flag, whitespace collapsed ('' when absent)."""
    m = re.search(rf"^\s+{re.escape(flag)}\b(.*?)(?=^\s+--|\Z)", text, re.S | re.M)
    return " ".join(m.group(1).split()) if m else ""


def peer_supported(run_help: str) -> bool:
    """`zero run --peer` is accepted (until the cluster feature is wired into the CLI,
    its help says it is refused)."""
    text = flag_help(run_help, "--peer").lower()
    return bool(text) and "not supported" not in text and "refused" not in text
