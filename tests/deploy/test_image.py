"""The Dockerfile built and run for real, under podman (shared notes: containers.md).

The base image (a debootstrapped Debian standing in for python:3.11-slim) is built once
per machine by scripts/ci_image_setup.sh and cached in podman's store; the zero image is
rebuilt once per test session (conftest.py's `image` fixture, shared with
test_compose.py; layer cache: about 15 s). Containers run with `--network host` on
free loopback ports, each configured through ZERO_* variables so the image's HEALTHCHECK
finds its HTTP port.

Slow: `ZERO_SKIP_IMAGE=1` skips it in quick local runs. CI (CI set) runs it, and fails
rather than skips when podman is missing.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from deploy_helpers import http_get, image_skip_reason, podman
from support import free_ports, until

from zero.pb import zero_pb2, zero_pb2_grpc

pytestmark = [
    pytest.mark.image,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(image_skip_reason() is not None, reason=image_skip_reason() or ""),
]


class Container:
    """One zero container on the host network, on its own free ports."""

    def __init__(self, image: str, name: str, *args: str, zero_env: bool = True,
                 podman_args: tuple[str, ...] = ()) -> None:
        self.grpc_port, self.http_port = free_ports(2)
        self.name = name
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.volume = f"{name}-data"
        podman("run", "-d", "--name", name, "--network", "host",
               # No systemd here to time healthchecks; the test runs them itself.
               "--health-interval", "disable",
               "-v", f"{self.volume}:/data", *podman_args,
               *(["-e", f"ZERO_GRPC_ADDR={self.grpc}", "-e", f"ZERO_HTTP_ADDR=127.0.0.1:{self.http_port}",
                  "-e", f"ZERO_MY={self.grpc}", "-e", "ZERO_LOG_FORMAT=json"] if zero_env else []),
               image, *args)

    def health(self) -> tuple[int, dict]:
        status, body = http_get(self.http + "/health")
        try:
            return status, json.loads(body) if body else {}
        except ValueError:
            return status, {}

    def serving(self) -> bool:
        if self.state() != "running":
            raise AssertionError(f"{self.name} is {self.state()}:\n{self.logs()}")
        return self.health()[0] == 200

    def wait_serving(self, timeout: float = 30.0) -> None:
        until(self.serving, timeout, message=f"{self.name} /health 200", interval=0.1)

    def state(self) -> str:
        return podman("inspect", self.name, "--format", "{{.State.Status}}").stdout.strip()

    def exit_code(self) -> int:
        return int(podman("inspect", self.name, "--format", "{{.State.ExitCode}}").stdout.strip())

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return podman("healthcheck", "run", self.name, check=False, timeout=30)

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return (p.stdout + p.stderr)[-4000:]

    def remove(self) -> None:
        podman("rm", "--force", "--time", "2", self.name, check=False, timeout=60)
        podman("volume", "rm", "--force", self.volume, check=False)


@pytest.fixture
def containers(image: str) -> Iterator:
    run_id = uuid.uuid4().hex[:8]
    started: list[Container] = []

    def start(label: str, *args: str, zero_env: bool = True, podman_args: tuple[str, ...] = ()) -> Container:
        c = Container(image, f"zero-test-{run_id}-{label}", *args, zero_env=zero_env, podman_args=podman_args)
        started.append(c)
        return c

    yield start
    for c in started:
        c.remove()


def _assign_uids(grpc_addr: str, count: int = 10) -> zero_pb2.AssignedIds:
    with grpc.insecure_channel(grpc_addr) as ch:
        return zero_pb2_grpc.ZeroStub(ch).AssignIds(
            zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=count), timeout=5)


def test_image_metadata(image: str) -> None:
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["Entrypoint"] == ["zero"]
    assert cfg["Cmd"] == ["run", "--data-dir", "/data"]
    assert cfg["User"] not in ("", "0", "root") and not cfg["User"].startswith("0:")
    assert "/data" in cfg.get("Volumes", {})
    assert {"5080/tcp", "6080/tcp"} <= set(cfg.get("ExposedPorts", {}))
    healthcheck = info.get("Healthcheck") or cfg.get("Healthcheck") or {}  # podman: top level
    assert healthcheck.get("Test", [])[:1] == ["CMD"], "HEALTHCHECK lost (build with --format docker)"
    # No build tools or package installers in the final stage.
    p = podman("run", "--rm", "--network", "host", "--entrypoint", "sh", image, "-c",
               "id -u; for t in gcc cc make pip pip3 curl; do command -v $t; done; echo END")
    uid, *found = p.stdout.split()
    assert uid != "0", "the image runs as root"
    assert found == ["END"], f"build tools in the final image: {found[:-1]}"
    p = podman("run", "--rm", "--network", "host", "--entrypoint", "python3", image, "-m", "pip", "--version",
               check=False)
    assert p.returncode != 0 and "No module named pip" in p.stderr


# As deploy/k8s/statefulset.yaml's securityContext: read-only root, no capabilities.
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def test_single_zero_serves_reports_healthy_and_stops_on_sigterm(containers) -> None:
    z = containers("single", podman_args=HARDENED)
    z.wait_serving()
    status, body = z.health()
    assert status == 200 and body["role"] == "LEADER" and body["raft_id"] == 1
    hc = z.healthcheck()
    assert hc.returncode == 0, f"healthcheck: {hc.stdout} {hc.stderr}"
    assert "unhealthy" not in hc.stdout
    assert http_get(z.http + "/live")[0] == 200
    status, metrics = http_get(z.http + "/metrics")
    assert status == 200 and b"zero_is_leader 1.0" in metrics
    ids = _assign_uids(z.grpc)
    assert ids.end_id - ids.start_id == 9

    # SIGTERM through `podman stop` reaches zero (PID 1, exec form): a clean exit 0,
    # well inside the grace period (no SIGKILL).
    t0 = time.monotonic()
    podman("stop", "--time", "20", z.name, timeout=60)
    assert time.monotonic() - t0 < 15
    assert z.exit_code() == 0, z.logs()
    assert "zero stopped" in z.logs()

    # The named volume keeps the identity: a restart serves the same cluster and never
    # hands out the same UIDs again.
    cluster_id = body["cluster_id"]
    podman("start", z.name)
    z.wait_serving()
    assert z.health()[1]["cluster_id"] == cluster_id
    again = _assign_uids(z.grpc)
    assert again.start_id > ids.end_id


def test_datanode_containers_join_groups(containers) -> None:
    """The same image runs the reference data node (`zero datanode`), as compose does."""
    z = containers("dnzero", "run", "--data-dir", "/data", "--replicas", "2")
    z.wait_serving()
    dn_ports = free_ports(2)
    for port, group in zip(dn_ports, ("1", "2")):
        containers(f"dn{group}", "datanode", "--zero", z.grpc, "--addr", f"127.0.0.1:{port}", "--group", group,
                   "--data-dir", "/data", zero_env=False)

    def members() -> dict[str, tuple[int, bool]]:
        status, body = http_get(z.http + "/state")
        if status != 200:
            return {}
        groups = json.loads(body).get("groups", {})
        return {m["addr"]: (int(gid), bool(m.get("healthy"))) for gid, g in groups.items()
                for m in g.get("members", {}).values()}

    want = {f"127.0.0.1:{dn_ports[0]}": (1, True), f"127.0.0.1:{dn_ports[1]}": (2, True)}
    until(lambda: members() == want, 30, message=f"data nodes in groups 1 and 2: {want}", interval=0.5)


def test_healthcheck_fails_when_nothing_serves(containers) -> None:
    z = containers("probe")
    z.wait_serving()
    # The same probe pointed at a port where no zero listens: exit 1 (never 2, which
    # container engines reserve), so the container would turn unhealthy.
    dead = free_ports(1)[0]
    p = podman("exec", "-e", f"ZERO_HTTP_ADDR=127.0.0.1:{dead}", z.name, "python3", "/opt/zero/bin/zero-healthcheck",
               check=False, timeout=30)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "unhealthy" in p.stderr


def test_three_containers_form_a_cluster_and_survive_one_kill(containers) -> None:
    first = containers("c1")
    first.wait_serving()
    others = [containers(f"c{i}", "run", "--data-dir", "/data", "--peer", first.grpc) for i in (2, 3)]
    zs = [first, *others]

    def three_zeros() -> bool:
        for z in zs:
            if not z.serving():
                return False
            status, body = http_get(z.http + "/state")
            if status != 200 or len(json.loads(body).get("zeros", {})) != 3:
                return False
        # Voters, not learners still in their promotion window: a leader killed before
        # that leaves one voter, dead, and nobody can be elected.
        return any(h.get("role") == "LEADER" and h.get("active_voters") == 3 for _, h in (z.health() for z in zs))

    until(three_zeros, 60, message="3 zeros serving, each with 3 zeros in /state, all voters", interval=0.5)
    ids = {z.health()[1]["raft_id"] for z in zs}
    assert len(ids) == 3, f"raft ids not distinct: {ids}"
    leaders = {z.health()[1]["leader_id"] for z in zs}
    assert len(leaders) == 1
    for z in zs:
        hc = z.healthcheck()
        assert hc.returncode == 0, f"{z.name} healthcheck: {hc.stdout} {hc.stderr}"

    # Kill the leader's container outright: the other two elect a leader and keep serving.
    leader_id = leaders.pop()
    victim = next(z for z in zs if z.health()[1]["raft_id"] == leader_id)
    before = _assign_uids(victim.grpc)
    podman("kill", "--signal", "KILL", victim.name)
    survivors = [z for z in zs if z is not victim]

    def new_leader() -> bool:
        hs = [z.health() for z in survivors]
        return all(s == 200 and h["leader_id"] not in (0, leader_id) for s, h in hs)

    until(new_leader, 30, message="the two survivors serving under a new leader", interval=0.2)
    for z in survivors:
        addr = z.grpc
        after = until(lambda: _try_assign(addr), 15, message=f"AssignIds through {z.name}", interval=0.1)
        assert after.start_id > before.end_id
        hc = z.healthcheck()
        assert hc.returncode == 0, f"{z.name} healthcheck: {hc.stdout} {hc.stderr}"


def _try_assign(grpc_addr: str) -> zero_pb2.AssignedIds | None:
    try:
        return _assign_uids(grpc_addr)
    except grpc.RpcError:
        return None
