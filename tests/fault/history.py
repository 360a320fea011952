"""The history of one run: every client call with its invocation and completion times
(time.monotonic, which is system-wide, so histories from several processes on one machine
compare), and every fault the nemesis injected.

An op ends in one of three ways, as in Jepsen:
    ok    - the call returned; its value is what zero answered
    fail  - zero answered with an error that says nothing happened (e.g. INVALID_ARGUMENT)
    info  - indeterminate (UNAVAILABLE, DEADLINE_EXCEEDED, a dropped connection): it may or
            may not have taken effect, so checkers must allow both
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Op", "History", "OK", "FAIL", "INFO"]

OK, FAIL, INFO = "ok", "fail", "info"


@dataclass(slots=True)
class Op:
    process: str            # the client (or "nemesis") that made the call
    f: str                  # what it called: "uid", "ts", "claim", "connect", "watch", "kill9", ...
    invoke: float           # time.monotonic() just before the call
    complete: float = 0.0   # time.monotonic() just after it returned (0 while pending)
    type: str = INFO        # ok | fail | info
    args: dict[str, Any] = field(default_factory=dict)
    value: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class History:
    """Thread-safe, append-only."""

    def __init__(self, seed: int = 0, name: str = "run") -> None:
        self.seed = seed
        self.name = name
        self._ops: list[Op] = []
        self._lock = threading.Lock()
        self.meta: dict[str, Any] = {}

    def add(self, op: Op) -> Op:
        with self._lock:
            self._ops.append(op)
        return op

    def extend(self, ops: list[Op]) -> None:
        with self._lock:
            self._ops.extend(ops)

    def ops(self, f: str | None = None, type: str | None = None) -> list[Op]:
        with self._lock:
            got = list(self._ops)
        return [o for o in got if (f is None or o.f == f) and (type is None or o.type == type)]

    def begin(self, process: str, f: str, **args: Any) -> Op:
        return self.add(Op(process=process, f=f, invoke=time.monotonic(), args=args))

    @staticmethod
    def end(op: Op, type: str, value: dict[str, Any] | None = None, error: str = "") -> Op:
        op.complete = time.monotonic()
        op.type = type
        if value:
            op.value = value
        op.error = error
        return op

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.ops():
            k = f"{o.f}:{o.type}"
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    # -- files ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "meta": self.meta,
                "ops": [asdict(o) for o in self.ops()]}

    def dump(self, directory: str | os.PathLike[str] | None = None) -> Path:
        """Write the full history as JSON and return its path."""
        d = Path(directory or os.environ.get("ZERO_FAULT_HISTORY_DIR") or tempfile.gettempdir())
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"zero-fault-{self.name}-seed{self.seed}-{os.getpid()}-{int(time.time())}.json"
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w") as f:
            for o in self.ops():
                f.write(json.dumps(asdict(o)) + "\n")

    @classmethod
    def read_jsonl(cls, path: Path) -> list[Op]:
        out = []
        for line in Path(path).read_text().splitlines():
            if line.strip():
                out.append(Op(**json.loads(line)))
        return out
