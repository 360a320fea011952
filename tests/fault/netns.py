"""Network namespaces for partitions (../shared/notes/netns.md): one "switch" namespace
holding a bridge, one namespace per zero and one for the clients, each joined to the
bridge by a veth pair. Partitions are iptables DROP rules inside a zero's namespace (the
clients can still reach it: that is how an isolated leader is caught answering) or the
veth's switch end set down (the node vanishes for everyone).

The traffic rule: every connection to a namespace address starts inside a namespace on
the same bridge. The pytest process (root namespace) only creates and deletes the
namespaces and starts one runner process inside the client namespace; that runner
starts the zeros (`ip netns exec`), runs clients and nemesis, and calls
`assert_inside_namespace` before it opens any connection.

Names carry a per-run token so concurrent runs never collide; `Namespaces` deletes
everything it made (and kills what still runs inside) in a `finally`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence

__all__ = ["unavailable", "Namespaces", "assert_inside_namespace", "in_netns", "netns_inode"]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=20)


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 iptables; see scripts/ci_fault_setup.sh)"
    probe = f"zfprobe{secrets.token_hex(3)}"
    p = _run("ip", "netns", "add", probe, check=False)
    if p.returncode != 0:
        return f"`ip netns add` fails here: {p.stderr.strip()}"
    try:
        q = _run("ip", "netns", "exec", probe, "iptables", "-L", "-n", check=False)
        if q.returncode != 0:
            return f"iptables does not work inside a namespace: {q.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def netns_inode() -> int:
    """The inode of this process's network namespace."""
    return os.stat("/proc/self/ns/net").st_ino


def assert_inside_namespace(addrs: Sequence[str], subnet_prefix: str, ns_name: str, root_inode: int) -> None:
    """Refuse to connect to namespace addresses unless this process runs inside `ns_name`
    (a namespace on the run's bridge) and not in the root namespace (`root_inode`, as
    recorded by the test process there) - from the root namespace their route would lead
    off the machine. Also refuse any address outside the run's subnet."""
    here = netns_inode()
    if here == root_inode:
        raise AssertionError("refusing to connect to namespace addresses from the root network namespace")
    try:
        want = os.stat(f"/run/netns/{ns_name}").st_ino
    except OSError as e:
        raise AssertionError(f"refusing to connect: namespace {ns_name} does not exist ({e})") from None
    if here != want:
        raise AssertionError(f"refusing to connect: this process is not inside namespace {ns_name}")
    for a in addrs:
        if not a.startswith(subnet_prefix):
            raise AssertionError(f"refusing to connect to {a}: not on this run's bridge ({subnet_prefix}*)")


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


class Namespaces:
    """`with Namespaces(3) as ns:` - a bridge, `ns.nodes[i]` at `ns.ip(i)`, `ns.client`."""

    def __init__(self, n: int) -> None:
        tok = secrets.token_hex(3)
        self.token = tok
        self.switch = f"zf{tok}-sw"
        self.nodes = [f"zf{tok}-n{i + 1}" for i in range(n)]
        self.client = f"zf{tok}-c"
        self.octet = 16 + secrets.randbelow(200)
        self.prefix = f"10.231.{self.octet}."
        self._made: list[str] = []

    def ip(self, i: int) -> str:
        return f"{self.prefix}{i + 1}"

    @property
    def client_ip(self) -> str:
        return f"{self.prefix}100"

    def veth(self, i: int) -> tuple[str, str]:
        """(inside the namespace, on the switch) names for node i; len <= 15."""
        return f"zf{self.token}v{i}", f"zf{self.token}p{i}"

    def __enter__(self) -> Namespaces:
        try:
            self._create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def _add(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._made.append(name)

    def _create(self) -> None:
        self._add(self.switch)
        sw = ["ip", "netns", "exec", self.switch]
        _run(*sw, "ip", "link", "add", "br0", "type", "bridge")
        _run(*sw, "ip", "link", "set", "br0", "up")
        for i, (ns, ip) in enumerate([*zip(self.nodes, map(self.ip, range(len(self.nodes)))),
                                      (self.client, self.client_ip)]):
            self._add(ns)
            inner, outer = self.veth(i)
            _run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            _run("ip", "link", "set", inner, "netns", ns)
            _run("ip", "link", "set", outer, "netns", self.switch)
            _run(*sw, "ip", "link", "set", outer, "master", "br0")
            _run(*sw, "ip", "link", "set", outer, "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", inner)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def delete(self) -> None:
        """Kill whatever still runs in our namespaces, then delete them (veths go with them)."""
        for ns in self._made:
            p = _run("ip", "netns", "pids", ns, check=False)
            for pid in p.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns, check=False)
        self._made.clear()

    # -- partitions (run from anywhere: `ip netns exec` switches namespace) -----------------------
    def cut(self, i: int, from_ips: Sequence[str]) -> None:
        """Node i drops all traffic to and from `from_ips` (both directions)."""
        for src in from_ips:
            _run("ip", "netns", "exec", self.nodes[i], "iptables", "-A", "INPUT", "-s", src, "-j", "DROP")
            _run("ip", "netns", "exec", self.nodes[i], "iptables", "-A", "OUTPUT", "-d", src, "-j", "DROP")

    def link(self, i: int, up: bool) -> None:
        _run("ip", "netns", "exec", self.switch, "ip", "link", "set", self.veth(i)[1], "up" if up else "down")

    def heal(self) -> None:
        for i, ns in enumerate(self.nodes):
            _run("ip", "netns", "exec", ns, "iptables", "-F", check=False)
            self.link(i, True)

    def as_dict(self) -> dict[str, object]:
        return {"token": self.token, "switch": self.switch, "nodes": self.nodes, "client": self.client,
                "octet": self.octet}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Namespaces:
        ns = cls.__new__(cls)
        ns.token = str(d["token"])
        ns.switch = str(d["switch"])
        ns.nodes = list(d["nodes"])  # type: ignore[call-overload]
        ns.client = str(d["client"])
        ns.octet = int(d["octet"])  # type: ignore[call-overload]
        ns.prefix = f"10.231.{ns.octet}."
        ns._made = []  # the runner inside never deletes: the pytest process owns them
        return ns
