"""A real Prometheus server (Debian's `prometheus` binary) scraping live zeros on free
loopback ports, with deploy/prometheus/alerts.yml loaded: a recording rule sees exactly
one leader, every rule evaluates without error, no alert fires on a healthy cluster, and
every Grafana dashboard query runs.

Three zeros; the leader is then killed and Prometheus sees exactly one new leader."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import REPO, http_get
from support import free_ports, until
from test_manifests import dashboard_exprs

PROM = REPO / "deploy" / "prometheus"

pytestmark = pytest.mark.timeout(180)


def _prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing: CI must install Debian's prometheus (scripts/ci_image_setup.sh --packages)")
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus; CI installs it)")
    return path


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.name = Path(args[0]).name if args[0] != sys.executable else " ".join(args[1:4])
        self._f = log.open("w")
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=self._f, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._f.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


def start_zeros(tmp_path: Path, procs: list[Proc], n: int) -> list[str]:
    """n zeros (the first bootstraps, the others join it); their HTTP addresses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}
    https, first_grpc = [], ""
    for i in range(n):
        grpc_port, http_port = free_ports(2)
        grpc = f"127.0.0.1:{grpc_port}"
        args = [sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / f"zw{i}"),
                "--grpc-addr", grpc, "--http-addr", f"127.0.0.1:{http_port}", "--my", grpc,
                "--log-format", "json"]
        if i == 0:
            first_grpc = grpc
        else:
            args += ["--peer", first_grpc]
        z = Proc(args, tmp_path / f"zero{i}.log", env)
        procs.append(z)
        http = f"127.0.0.1:{http_port}"
        until(lambda: z.alive() and http_get(f"http://{http}/health")[0] == 200, 60, message=f"zero {i} /health 200",
              interval=0.1)
        https.append(http)
    return https


def query(base: str, expr: str) -> dict[str, Any]:
    status, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if status == 0:
        return {"status": "unreachable"}
    return json.loads(body)


def test_prometheus_scrapes_live_zeros_and_sees_exactly_one_leader(tmp_path: Path, procs: list[Proc]) -> None:
    binary = _prometheus()
    n = 3
    targets = start_zeros(tmp_path, procs, n)

    # The deployment's rules, plus one recording rule the test waits on.
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "test_rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "zero.test", "rules": [
        {"record": "zero:leaders:sum", "expr": 'sum(zero_is_leader{job="zero"})'}]}]}))
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = ["alerts.yml", "test_rules.yml"]
    zero_job = next(j for j in config["scrape_configs"] if j["job_name"] == "zero")
    zero_job["static_configs"] = [{"targets": targets}]
    # All zeros share 127.0.0.1 here: keep the port in `instance` (the deployment drops it).
    zero_job.pop("relabel_configs", None)
    config["scrape_configs"] = [zero_job]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    prom = Proc([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                tmp_path / "prometheus.log")
    procs.append(prom)
    until(lambda: prom.alive() and http_get(f"{base}/-/ready")[0] == 200, 60, message="prometheus ready", interval=0.1)

    def scraped_all() -> bool:
        r = query(base, 'count(up{job="zero"} == 1)')
        return r.get("status") == "success" and [float(x["value"][1]) for x in r["data"]["result"]] == [n]

    until(scraped_all, 30, message=f"prometheus scraping {n} zeros", interval=0.5)

    def one_leader() -> bool:
        r = query(base, "zero:leaders:sum == 1")
        return r.get("status") == "success" and len(r["data"]["result"]) == 1

    until(one_leader, 30, message="the rule zero:leaders:sum == 1", interval=0.5)
    r = query(base, 'sum(zero_is_leader{job="zero"}) == 1')
    assert len(r["data"]["result"]) == 1

    # Every rule of alerts.yml evaluates without error, and on this healthy cluster every
    # alert settles to inactive. (One may be pending for an evaluation or two at start:
    # a round can see the followers' first scrape before the leader's.)
    def rules_now() -> list[dict[str, Any]] | None:
        status, body = http_get(f"{base}/api/v1/rules")
        if status != 200:
            return None
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        done = all(r.get("lastEvaluation", "").startswith("2") and not r["lastEvaluation"].startswith("0001")
                   for r in rules)
        return rules if done else None

    rules = until(rules_now, 30, message="every rule evaluated once", interval=0.5)
    assert len([r for r in rules if r["type"] == "alerting"]) >= 7
    for r in rules:
        assert r["health"] == "ok", f"rule {r['name']}: {r.get('lastError')}"
    latest: dict[str, list[dict[str, Any]]] = {}

    def all_inactive() -> bool:
        rules = rules_now() or []
        for r in rules:
            assert r["health"] == "ok", f"rule {r['name']}: {r.get('lastError')}"
            assert r.get("state") != "firing", f"alert {r['name']} fires on a healthy cluster: {r['alerts']}"
        latest["active"] = [r for r in rules if r["type"] == "alerting" and r["state"] != "inactive"]
        return bool(rules) and not latest["active"]

    try:
        until(all_inactive, 20, message="every alert inactive", interval=0.5)
    except AssertionError:
        raise AssertionError(f"alerts still active on a healthy cluster: {latest.get('active')}") from None

    # The Grafana dashboard's queries run (Grafana's variables replaced as Grafana would).
    for expr in dashboard_exprs():
        if expr.startswith("label_values("):
            continue
        e = expr.replace("$__rate_interval", "1m").replace("$job", "zero").replace("$instance", ".*")
        r = query(base, e)
        assert r.get("status") == "success", f"dashboard query {e!r}: {r}"
    r = query(base, 'zero_raft_id{job="zero"}')
    assert {x["metric"]["instance"] for x in r["data"]["result"]} == set(targets)

    # Kill the leader: Prometheus sees its target down, and the rule sees exactly one
    # leader again: a new one, among the two survivors.
    leader = query(base, 'zero_is_leader{job="zero"} == 1')["data"]["result"]
    assert len(leader) == 1
    victim = leader[0]["metric"]["instance"]
    procs[targets.index(victim)].proc.kill()

    def failed_over() -> bool:
        down = query(base, 'up{job="zero"} == 0').get("data", {}).get("result", [])
        lead = query(base, 'zero_is_leader{job="zero"} == 1').get("data", {}).get("result", [])
        one = query(base, "zero:leaders:sum == 1").get("data", {}).get("result", [])
        return ([x["metric"]["instance"] for x in down] == [victim] and len(one) == 1
                and [x["metric"]["instance"] for x in lead] not in ([], [victim]))

    until(failed_over, 30, message="prometheus: the old leader down, exactly one new leader", interval=0.5)
