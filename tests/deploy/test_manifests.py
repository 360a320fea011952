"""deploy/ checked without containers: compose and Kubernetes YAML parsed, every `zero`
flag and ZERO_* variable they use checked against the live `--help`, Prometheus config
and rules through promtool (config, rules, and the rule unit tests), metric names in
alerts and the Grafana dashboard checked against zero's registry."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import REPO, flags_in_help, help_text

from zero import cli
from zero.metrics import Metrics
from zero.leader.move_metrics import MoveMetrics
from zero.pb import zero_pb2

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"

# Metrics the alerts and dashboard use that zero does not export yet (named in the
# issue's closing note): the rules are ready for them, and stay silent until then.
PENDING_METRICS = {
    "zero_members_unhealthy",  # data-node members the leader has not heard from within 10 s
    "zero_tablet_move_oldest_seconds",  # age of the oldest tablet move in progress (0: none)
}
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


# -- helpers ---------------------------------------------------------------------------------------
def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def load_k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s_one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in load_k8s() if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def zero_container() -> dict[str, Any]:
    return k8s_one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def k8s_zero_commands() -> list[list[str]]:
    """Each `zero ...` command line in the StatefulSet's shell script, as argv after `zero`."""
    script = "\n".join(zero_container()["args"])
    cmds = []
    for line in script.splitlines():
        m = re.search(r"\bexec zero (.*)$", line.strip())
        if m:
            cmds.append(shlex.split(m.group(1)))
    return cmds


def compose_zero_commands() -> dict[str, list[str]]:
    """Service name -> command (argv after the `zero` entrypoint) for zero-image services."""
    return {name: svc["command"] for name, svc in load_compose()["services"].items()
            if "zero" in str(svc.get("image", "")) and svc.get("command")}


def used_flags(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


@pytest.fixture(scope="module")
def run_help() -> str:
    return help_text("run")


def _env_flag(name: str) -> str:
    return "--" + name.removeprefix("ZERO_").lower().replace("_", "-")


_VAR_REF = re.compile(r"\$\(\w+\)|\$\{\w+(?::?[-?][^}]*)?\}")


def _check_run_argv(argv: list[str], env: dict[str, str], run_help: str, where: str) -> None:
    """Flags exist, and the values (--peer and ZERO_PEER included) validate as `zero run` would."""
    flags = flags_in_help(run_help)
    for f in used_flags(argv):
        assert f in flags, f"{where}: `zero run` has no flag {f}"
    for k in env:
        if k.startswith("ZERO_") and k != "ZERO_IMAGE":
            assert _env_flag(k) in flags, f"{where}: {k} is no `zero run` flag's variable"
    # $(VAR) references and ${VAR} in k8s/compose stand for host names and secrets (compose's
    # ${VAR:?message} and ${VAR:-default} too): use a valid one.
    args = [_VAR_REF.sub("x", a) for a in argv]
    ns = cli.build_parser().parse_args(["run", *args])
    resolved = {k: _VAR_REF.sub("x", v) for k, v in env.items() if k.startswith("ZERO_")}
    try:
        cli.config_from_args(ns, environ=resolved)
    except cli.UsageError as e:
        raise AssertionError(f"{where}: zero run refuses {argv} with {resolved}: {e}") from None


# -- compose ---------------------------------------------------------------------------------------
def test_compose_has_three_zeros_two_datanode_groups_prometheus_grafana() -> None:
    c = load_compose()
    services = c["services"]
    assert {"zero1", "zero2", "zero3", "prometheus", "grafana"} <= set(services)
    cmds = compose_zero_commands()
    assert "--peer" not in cmds["zero1"], "zero1 bootstraps the cluster"
    for name in ("zero2", "zero3"):
        argv = cmds[name]
        assert argv[0] == "run" and argv[argv.index("--peer") + 1] == "zero1:5080"
        assert "--raft-id" not in argv, "joiners get their raft id from the cluster"
    for name in ("zero1", "zero2", "zero3"):
        svc = services[name]
        vol = svc["volumes"][0].split(":")
        assert vol[1] == "/data" and vol[0] in c["volumes"], f"{name}: a named volume on /data"
        assert cmds[name][cmds[name].index("--data-dir") + 1] == "/data"
        assert cmds[name][cmds[name].index("--my") + 1] == f"{name}:5080"
        assert svc["healthcheck"]["test"][:2] == ["CMD", "python3"]
    datanodes = {n: a for n, a in cmds.items() if a[0] == "datanode"}
    groups = {a[a.index("--group") + 1] for a in datanodes.values()}
    assert groups == {"1", "2"}, f"data nodes in 2 groups, got {groups}"
    for n, a in datanodes.items():
        assert a[a.index("--zero") + 1] == "zero1:5080,zero2:5080,zero3:5080"
        assert a[a.index("--addr") + 1] == f"{n}:7080"
    prom_vols = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/prometheus.yml:" in prom_vols and "./prometheus/alerts.yml:" in prom_vols
    graf_vols = " ".join(services["grafana"]["volumes"])
    assert "./grafana/provisioning:" in graf_vols and "./grafana/dashboards:" in graf_vols
    for src in re.findall(r"(\./[\w/.-]+):", prom_vols + " " + graf_vols):
        assert (DEPLOY / src).exists(), f"compose mounts {src}, which does not exist"


def test_compose_zero_flags_exist_in_zero_run_help(run_help: str) -> None:
    c = load_compose()
    for name, argv in compose_zero_commands().items():
        if argv[0] != "run":
            continue
        env = dict(c["services"][name].get("environment") or {})
        _check_run_argv(argv[1:], env, run_help, f"compose {name}")


def test_compose_datanode_flags_exist_in_zero_datanode_help() -> None:
    flags = flags_in_help(help_text("datanode"))
    for name, argv in compose_zero_commands().items():
        if argv[0] == "datanode":
            for f in used_flags(argv):
                assert f in flags, f"compose {name}: `zero datanode` has no flag {f}"


# -- kubernetes ------------------------------------------------------------------------------------
def test_k8s_statefulset_services_pdb() -> None:
    sts = k8s_one("StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()

    headless = k8s_one("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    client = [d for d in load_k8s() if d["kind"] == "Service" and d["spec"].get("clusterIP") != "None"]
    assert len(client) == 1 and not client[0]["spec"].get("publishNotReadyAddresses")
    for svc in (headless, client[0]):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert {p["port"] for p in svc["spec"]["ports"]} == {5080, 6080}

    pdb = k8s_one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    c = zero_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 5080, "http": 6080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    pod_sc = spec["template"]["spec"]["securityContext"]
    uid = re.search(r"ARG ZERO_UID=(\d+)", (REPO / "Dockerfile").read_text())
    assert uid, "the Dockerfile names its UID"
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == int(uid.group(1)) != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    claim = spec["volumeClaimTemplates"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert claim["spec"]["resources"]["requests"]["storage"]


def test_k8s_zero0_bootstraps_and_the_others_join_the_headless_service(tmp_path: Path) -> None:
    """Run the pod's shell script with stand-ins: `zero` prints its argv; `python3` (the
    probe for another zero serving) exits as PEERS_UP says."""
    c = zero_container()
    assert c["command"][:2] == ["/bin/sh", "-c"]
    script = c["args"][0]
    probe = re.search(r"python3 -c '(.*?)'", script, re.S)
    assert probe, "the peer probe is a python3 -c snippet"
    (tmp_path / "zero").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (tmp_path / "python3").write_text('#!/bin/sh\necho "$3" > "$PROBED"\nexit "$PEERS_UP"\n')
    for f in ("zero", "python3"):
        (tmp_path / f).chmod(0o755)
    headless = k8s_one("StatefulSet")["spec"]["serviceName"]
    service = f"{headless}.prod.svc.cluster.local"
    for pod, peers_up, joins in (("zero-0", 1, False), ("zero-0", 0, True), ("zero-1", 1, True),
                                 ("zero-12", 1, True), ("zero-10", 0, True)):
        probed = tmp_path / "probed"
        probed.unlink(missing_ok=True)
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "POD_NAME": pod, "POD_NAMESPACE": "prod",
               "PEERS_UP": str(peers_up), "PROBED": str(probed)}
        p = subprocess.run(["/bin/sh", "-c", *c["args"]], env=env, capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, p.stderr
        argv = p.stdout.splitlines()
        assert argv[:1] == ["run"] and "--raft-id" not in argv
        if pod == "zero-0":
            assert probed.read_text().strip() == service, "zero-0 probes the headless Service"
        if joins:
            assert argv[argv.index("--peer") + 1] == f"{service}:5080", (pod, argv)
        else:
            assert "--peer" not in argv, f"{pod} must bootstrap when no other zero serves"


def test_k8s_zero0_peer_probe_wants_a_serving_zero() -> None:
    """The probe itself, on loopback (its port moved to a free one): a zero answering
    /health 200 means join; 503 (e.g. a joiner without a leader) or nothing means bootstrap."""
    import http.server
    import threading

    snippet = re.search(r"python3 -c '(.*?)'", zero_container()["args"][0], re.S).group(1)  # type: ignore[union-attr]
    code = {"status": 200}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(code["status"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    probe = snippet.replace("6080", str(port))
    assert probe != snippet

    def run() -> int:
        return subprocess.run([sys.executable, "-c", probe, "127.0.0.1"], timeout=20).returncode

    try:
        assert run() == 0, "a serving zero: join"
        code["status"] = 503
        assert run() == 1, "a zero that does not serve: bootstrap"
    finally:
        server.shutdown()
        server.server_close()
    assert run() == 1, "nothing listening: bootstrap"


def test_k8s_zero_flags_and_variables_exist_in_zero_run_help(run_help: str) -> None:
    c = zero_container()
    cmds = k8s_zero_commands()
    assert len(cmds) == 2
    env = {e["name"]: e.get("value", "token") for e in c["env"] if e["name"].startswith("ZERO_")}
    my = env["ZERO_MY"]
    assert my.startswith("$(POD_NAME).") and my.endswith(":5080")
    defined: list[str] = []
    for e in c["env"]:  # $(VAR) references only see variables defined before them
        for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
            assert ref in defined, f"{e['name']} refers to $({ref}) before it is defined"
        defined.append(e["name"])
    for argv in cmds:
        assert argv[0] == "run"
        _check_run_argv(argv[1:], env, run_help, "k8s StatefulSet")


def test_k8s_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files


# -- prometheus ------------------------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: CI must install Debian's prometheus (scripts/ci_image_setup.sh --packages)")
        pytest.skip("promtool is not installed (apt-get install prometheus; CI installs it)")
    return path


def test_promtool_check_config_and_rules() -> None:
    tool = promtool()
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        p = subprocess.run([tool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"promtool {' '.join(args)}:\n{p.stdout}\n{p.stderr}"


def test_alert_rules_cover_the_issue() -> None:
    rules = [r for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"ZeroNoLeader", "ZeroFrequentLeaderChanges", "ZeroDown", "ZeroSlowFsync", "ZeroProposalsFailing",
            "ZeroDataNodesUnhealthy", "ZeroTabletMoveStuck"} <= names
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert names - tested <= {"ZeroMultipleLeaders", "ZeroApplyLagging"}, \
        f"alerts never seen firing in alerts_test.yml: {sorted(names - tested)}"


def exported_metric_names() -> set[str]:
    """Every series name zero's registry can export (counters as _total, histograms as
    _bucket/_sum/_count)."""
    names = set()
    metrics = Metrics()
    MoveMetrics(metrics.registry, zero_pb2.MembershipState)  # registered by the leader's move driver
    for fam in metrics.registry.collect():
        if fam.type == "counter":
            names |= {fam.name + "_total", fam.name + "_created"}
        elif fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(fam.name)
    return names


_PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
                 "rate", "increase", "irate", "deriv", "histogram_quantile", "and", "or", "unless", "vector",
                 "label_values", "offset", "bool", "le", "instance", "job", "result", "method", "code", "peer",
                 "topk", "bottomk", "abs", "absent", "clamp_min", "time", "group", "changes"}


def metric_names_in(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in _PROMQL_WORDS and not w.startswith("__")}


def dashboard_exprs() -> list[str]:
    dash = json.loads((GRAFANA / "dashboards" / "zero.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
              for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_alerts_and_dashboard_use_metrics_zero_exports() -> None:
    known = exported_metric_names() | PENDING_METRICS | PROMETHEUS_BUILTIN
    rules = [r for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    for r in rules:
        unknown = metric_names_in(r["expr"]) - known
        assert not unknown, f"alert {r['alert']} uses metrics zero does not export: {sorted(unknown)}"
    for e in dashboard_exprs():
        unknown = metric_names_in(e.replace("label_values(", "(")) - known
        assert not unknown, f"dashboard query {e!r} uses metrics zero does not export: {sorted(unknown)}"


# -- grafana ---------------------------------------------------------------------------------------
def test_grafana_provisioning_and_dashboard() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in ds}
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "zero.yml").read_text())["providers"]
    compose = load_compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in compose["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == prov[0]["options"]["path"]
    dash = json.loads((GRAFANA / "dashboards" / "zero.json").read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] in uids, p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
    # Panels do not overlap on the grid (24 columns).
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine


# -- the image and the README -----------------------------------------------------------------------
def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2 and all(f.startswith("${BASE_IMAGE}") for f in froms)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.1[1-9]-slim$", text, re.M)
    assert "python3 -m venv" in text
    final = text[text.rindex("\nFROM "):]
    assert "COPY --from=build /opt/zero /opt/zero" in final
    assert not re.search(r"apt-get|pip install|gcc|build-essential", final), "build tools in the final stage"
    assert re.search(r"^USER \$\{ZERO_UID\}", final, re.M)
    assert re.search(r'^VOLUME \["/data"\]', final, re.M)
    assert re.search(r"^EXPOSE 5080 6080$", final, re.M)
    assert re.search(r'^ENTRYPOINT \["zero"\]$', final, re.M)
    assert re.search(r'^CMD \["run", "--data-dir", "/data"\]$', final, re.M)
    assert "HEALTHCHECK" in final and "curl" not in final.split("HEALTHCHECK", 1)[1].split("\n")[1]
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "zw", ".pytest_cache"} <= set(ignored)
