"""Committed generated protobuf code must match what the pinned generator makes."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = sorted(p.relative_to(ROOT / "proto") for p in (ROOT / "proto").rglob("*.proto"))


@pytest.mark.parametrize("proto", PROTOS, ids=str)
def test_generated_code_is_current(proto, tmp_path):
    pytest.importorskip("grpc_tools")
    src = (ROOT / "proto" / proto).read_text()
    has_services = "service " in src
    args = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    if has_services:
        args.append(f"--grpc_python_out={tmp_path}")
    subprocess.run(args + [str(ROOT / "proto" / proto)], check=True)
    stem = proto.with_suffix("")
    outputs = [f"{stem}_pb2.py", f"{stem}_pb2.pyi"] + ([f"{stem}_pb2_grpc.py"] if has_services else [])
    for rel in outputs:
        fresh = (tmp_path / rel).read_text()
        committed_path = ROOT / rel
        assert committed_path.exists(), f"{rel} is not committed; run scripts/gen_protos.sh"
        assert committed_path.read_text() == fresh, f"{rel} differs from the generator's output; run scripts/gen_protos.sh"
