"""deploy/docker-compose.yml run for real with podman-compose (shared notes: compose.md).

The real compose file, its zero and data-node services only (zero1-3, dn1-4): Prometheus
and Grafana come from registries this machine cannot reach, so test_manifests.py checks
them statically. The image is conftest.py's `image` (built once per session, shared with
test_image.py), named through ZERO_IMAGE; the project name is unique per run; the ports
are free ones chosen here (ZERO<n>_GRPC_PORT / ZERO<n>_HTTP_PORT) and published on
127.0.0.1, the file's default. No systemd runs healthchecks on a timer here, so the test
runs each with `podman healthcheck run`. podman-compose 1.0.3 (Debian) ignores the
depends_on conditions and starts all seven at once; the joiners retry (--join-timeout).

`ZERO_SKIP_IMAGE=1` skips it locally; CI (CI set) fails rather than skips when podman or
podman-compose is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import uuid
from typing import Any

import grpc
import pytest
import yaml
from deploy_helpers import CONTAINERS_CONF, REPO, http_get, image_skip_reason, podman, require_tools
from support import free_ports, until

from zero.pb import zero_pb2, zero_pb2_grpc

COMPOSE = REPO / "deploy" / "docker-compose.yml"
ZEROS = ("zero1", "zero2", "zero3")
DATANODES = ("dn1", "dn2", "dn3", "dn4")
GROUPS = {"dn1": 1, "dn2": 1, "dn3": 2, "dn4": 2}
SECRETS = ("ZERO_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD")

_SKIP = image_skip_reason("podman-compose")


def needs_compose(test: Any) -> Any:
    """The marks of a test that runs podman-compose (the static ones here need nothing)."""
    for mark in (pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""), pytest.mark.timeout(600),
                 pytest.mark.slow, pytest.mark.image):
        test = mark(test)
    return test


# -- the file, statically (no tools) ------------------------------------------------------------
def test_compose_publishes_on_loopback_by_default_on_chosen_ports() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert set(published) == {*ZEROS, "prometheus", "grafana"}
    for name, ports in published.items():
        for p in ports:
            m = re.fullmatch(r"\$\{PUBLISH_ADDR:-127\.0\.0\.1\}:\$\{([A-Z0-9_]+)_PORT:-(\d+)\}:(\d+)", p)
            assert m, f"{name} publishes {p!r}: want ${{PUBLISH_ADDR:-127.0.0.1}}:${{<NAME>_PORT:-N}}:N"
    assert services["zero1"]["ports"] == ["${PUBLISH_ADDR:-127.0.0.1}:${ZERO1_GRPC_PORT:-5080}:5080",
                                          "${PUBLISH_ADDR:-127.0.0.1}:${ZERO1_HTTP_PORT:-6080}:6080"]


def test_compose_requires_the_admin_token_and_grafana_password() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ZEROS:
        assert services[name]["environment"]["ZERO_ADMIN_TOKEN"].startswith("${ZERO_ADMIN_TOKEN:?"), name
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?")
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    for var in (*SECRETS, "PUBLISH_ADDR", "ZERO1_GRPC_PORT"):
        assert var in header, f"the compose file's header does not explain {var}"


# -- podman-compose -----------------------------------------------------------------------------
class Project:
    """One run of the compose file under its own project name and free ports."""

    def __init__(self, image: str) -> None:
        self.name = f"zerotest{uuid.uuid4().hex[:8]}"
        self.token = secrets.token_hex(16)
        ports = free_ports(2 * len(ZEROS))
        self.grpc = {z: ports[2 * i] for i, z in enumerate(ZEROS)}
        self.http = {z: ports[2 * i + 1] for i, z in enumerate(ZEROS)}
        env = {k: v for k, v in os.environ.items() if k not in ("PUBLISH_ADDR", *SECRETS)}
        env.update(CONTAINERS_CONF=CONTAINERS_CONF, ZERO_IMAGE=image, ZERO_ADMIN_TOKEN=self.token,
                   GRAFANA_ADMIN_PASSWORD=secrets.token_hex(16))
        for i, z in enumerate(ZEROS, 1):
            env[f"ZERO{i}_GRPC_PORT"] = str(self.grpc[z])
            env[f"ZERO{i}_HTTP_PORT"] = str(self.http[z])
        self.env = env

    def compose(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["podman-compose", "-f", str(COMPOSE), "-p", self.name, *args], env=env or self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"  # podman-compose 1.0.3's naming

    def state(self, service: str) -> str:
        return podman("inspect", self.container(service), "--format", "{{.State.Status}}").stdout.strip()

    def logs(self, service: str) -> str:
        p = podman("logs", self.container(service), check=False)
        return (p.stdout + p.stderr)[-2500:]

    def health(self, zero: str) -> tuple[int, dict[str, Any]]:
        status, body = http_get(f"http://127.0.0.1:{self.http[zero]}/health")
        try:
            return status, json.loads(body) if body else {}
        except ValueError:
            return status, {}

    def state_json(self, zero: str) -> dict[str, Any]:
        status, body = http_get(f"http://127.0.0.1:{self.http[zero]}/state")
        return json.loads(body) if status == 200 else {}

    def leftovers(self) -> list[str]:
        label = f"label=io.podman.compose.project={self.name}"
        found = []
        for kind, args in (("container", ("ps", "-a", "--format", "{{.Names}}", "--filter", label)),
                           ("volume", ("volume", "ls", "--format", "{{.Name}}", "--filter", label)),
                           ("network", ("network", "ls", "--format", "{{.Name}}", "--filter", label)),
                           ("pod", ("pod", "ls", "--format", "{{.Name}}", "--filter", f"name={self.name}"))):
            found += [f"{kind} {n}" for n in podman(*args, check=False).stdout.split()]
        return found

    def down(self) -> None:
        self.compose("down", "-v", check=False, timeout=240)
        # podman-compose 1.0.3's down leaves the project's network behind.
        podman("network", "rm", "--force", f"{self.name}_default", check=False)


def _assign(port: int) -> zero_pb2.AssignedIds | None:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            return zero_pb2_grpc.ZeroStub(ch).AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=10),
                                                        timeout=5)
    except grpc.RpcError:
        return None


def _raft_status(port: int, token: str | None) -> zero_pb2.RaftStatusResponse:
    md = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return zero_pb2_grpc.ZeroAdminStub(ch).RaftStatus(zero_pb2.RaftStatusRequest(), metadata=md, timeout=5)


@pytest.mark.parametrize("missing", SECRETS)
@needs_compose
def test_podman_compose_refuses_to_start_without_a_secret(missing: str) -> None:
    require_tools("podman", "podman-compose")
    proj = Project("localhost/zero:unused")
    env = {k: v for k, v in proj.env.items() if k != missing}
    p = proj.compose("up", "-d", "--no-build", *ZEROS, env=env, check=False, timeout=60)
    assert p.returncode != 0, "podman-compose started without " + missing
    assert f"set {missing}" in p.stderr, p.stderr[-2000:]
    assert not proj.leftovers()


@needs_compose
def test_compose_cluster_serves_survives_a_killed_leader_and_comes_down(image: str) -> None:
    require_tools("podman", "podman-compose")
    proj = Project(image)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        proj.compose("up", "-d", "--no-build", *ZEROS, *DATANODES)
        timings["up"] = time.monotonic() - t0

        # Only the zeros publish, on 127.0.0.1 and the ports chosen here.
        for z in ZEROS:
            got = sorted(line.strip() for line in podman("port", proj.container(z)).stdout.splitlines() if line.strip())
            assert got == [f"5080/tcp -> 127.0.0.1:{proj.grpc[z]}", f"6080/tcp -> 127.0.0.1:{proj.http[z]}"], got
        for d in DATANODES:
            assert not podman("port", proj.container(d)).stdout.strip(), f"{d} publishes a port"

        # Every healthcheck passes (run on demand: no systemd timer here).
        def healthy(service: str) -> bool:
            state = proj.state(service)
            if state != "running":
                raise AssertionError(f"{service} is {state}:\n{proj.logs(service)}")
            return podman("healthcheck", "run", proj.container(service), check=False, timeout=30).returncode == 0

        pending = [*ZEROS, *DATANODES]

        def all_healthy() -> bool:
            pending[:] = [s for s in pending if not healthy(s)]
            return not pending

        try:
            until(all_healthy, 120, message="every healthcheck to pass", interval=1.0)
        except AssertionError as e:
            raise AssertionError(f"{e}; still failing: {pending}") from None
        timings["healthy"] = time.monotonic() - t0

        # /state through a published port: 3 zeros, the data nodes in their groups.
        def cluster_complete() -> bool:
            st = proj.state_json("zero1")
            zeros = {m["addr"] for m in st.get("zeros", {}).values() if m.get("healthy")}
            members = {m["addr"]: int(gid) for gid, g in st.get("groups", {}).items()
                       for m in g.get("members", {}).values() if m.get("healthy")}
            return zeros == {f"{z}:5080" for z in ZEROS} and members == {f"{d}:7080": g for d, g in GROUPS.items()}

        until(cluster_complete, 60, message="/state on zero1: 3 healthy zeros, dn1-dn4 healthy in groups 1 and 2",
              interval=0.5)
        timings["state"] = time.monotonic() - t0

        # The admin gRPC port wants the token the file requires.
        with pytest.raises(grpc.RpcError) as refused:
            _raft_status(proj.grpc["zero1"], None)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _raft_status(proj.grpc["zero1"], proj.token).term >= 1

        # Kill the leader's container outright.
        health = {z: proj.health(z) for z in ZEROS}
        assert all(s == 200 for s, _ in health.values()), health
        leader_id = health["zero1"][1]["leader_id"]
        assert {h["leader_id"] for _, h in health.values()} == {leader_id}
        victim = next(z for z in ZEROS if health[z][1]["raft_id"] == leader_id)
        before = _assign(proj.grpc[victim])
        assert before is not None
        podman("kill", "--signal", "KILL", proj.container(victim))
        survivors = [z for z in ZEROS if z != victim]
        t_kill = time.monotonic()

        def new_leader() -> bool:
            hs = [proj.health(z) for z in survivors]
            return all(s == 200 and h.get("leader_id") not in (None, 0, leader_id) for s, h in hs)

        until(new_leader, 60, message=f"{survivors} serving under a new leader after killing {victim}", interval=0.2)
        timings["new leader after kill"] = time.monotonic() - t_kill
        for z in survivors:
            port = proj.grpc[z]
            after = until(lambda: _assign(port), 20, message=f"AssignIds through {z}'s published gRPC port",
                          interval=0.5)
            assert after.start_id > before.end_id
            assert podman("healthcheck", "run", proj.container(z), check=False, timeout=30).returncode == 0, z

        def datanodes_back() -> bool:
            st = proj.state_json(survivors[0])
            members = {m["addr"] for g in st.get("groups", {}).values()
                       for m in g.get("members", {}).values() if m.get("healthy")}
            return members == {f"{d}:7080" for d in DATANODES}

        until(datanodes_back, 60, message=f"dn1-dn4 healthy in {survivors[0]}'s /state under the new leader",
              interval=0.5)
        for d in DATANODES:
            assert podman("healthcheck", "run", proj.container(d), check=False, timeout=30).returncode == 0, d
        timings["survivors serve"] = time.monotonic() - t0
    except BaseException:
        for s in (*ZEROS, *DATANODES):
            exists = podman("container", "exists", proj.container(s), check=False).returncode == 0
            print(f"--- {s} ({proj.state(s) if exists else 'absent'})\n{proj.logs(s) if exists else ''}")
        raise
    finally:
        t_down = time.monotonic()
        proj.down()
        timings["down"] = time.monotonic() - t_down
        print("compose test timings (s):", {k: round(v, 1) for k, v in timings.items()})
    assert not proj.leftovers(), f"left behind by `down -v`: {proj.leftovers()}"
