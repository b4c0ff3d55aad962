"""deploy/ checked offline: every file parses, every unit/manifest runs a real `lienthong`
command, every LIENTHONG_* variable exists, probe paths exist, rabbitmq.conf keys are known
to the installed RabbitMQ. What cannot run here (a container engine, a Kubernetes API) is
said in deploy/README.md."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from router.cli import main as lienthong_cli
from router.settings import Settings, variables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# deploy/cluster/ belongs to `make cluster` (another part of the project)
MINE = ("systemd", "oci", "compose", "k8s", "rabbitmq", "README.md")
RABBIT_PLUGINS = Path("/usr/lib/rabbitmq/lib")
_VAR = re.compile(r"\bLIENTHONG_[A-Z0-9_]+\b")


def _files() -> Iterator[Path]:
    for name in MINE:
        path = DEPLOY / name
        if path.is_file():
            yield path
        else:
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())


def _is_lienthong_command(args: list[str]) -> None:
    """Parse ``args`` as the lienthong CLI would (no command runs): a typo in a unit file or
    a manifest fails here instead of at 3 a.m."""
    ctx = click.Context(lienthong_cli, info_name="lienthong")
    group: click.Group = lienthong_cli
    rest = list(args)
    while True:  # our groups take no options of their own
        assert rest, f"`lienthong {shlex.join(args)}` names no command"
        sub = group.get_command(ctx, rest[0])
        assert sub is not None, f"no command {rest[0]!r} in `lienthong {shlex.join(args)}`"
        name, rest = rest[0], rest[1:]
        runs_itself = isinstance(sub, click.Group) and sub.invoke_without_command and (
            not rest or rest[0].startswith("-"))
        if not isinstance(sub, click.Group) or runs_itself:
            sub.make_context(name, rest, parent=ctx)  # raises on an unknown option or value
            return
        ctx, group = click.Context(sub, info_name=name, parent=ctx), sub


def test_every_lienthong_variable_in_deploy_is_read_by_settings() -> None:
    known = {f.metadata["env"] for f in variables()}
    used: dict[str, set[str]] = {}
    for path in _files():
        for name in _VAR.findall(path.read_text("utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    assert {"LIENTHONG_AMQP_URL", "LIENTHONG_DATABASE_URL"} <= set(used)
    unknown = {n: sorted(w) for n, w in used.items() if n not in known}
    assert not unknown, f"not read by router/settings.py: {unknown}"


def test_queue_and_exchange_names_in_deploy_are_the_topology_s() -> None:
    from router import topology

    names = {getattr(topology, n) for n in dir(topology)
             if n.isupper() and isinstance(getattr(topology, n), str)
             and getattr(topology, n).startswith("lt.")}
    used = {m for path in _files()
            for m in re.findall(r"\blt\.[a-z][a-z0-9.-]*[a-z0-9]", path.read_text("utf-8"))}
    assert "lt.router.in" in used
    per_gateway = re.compile(r"lt\.gw\.[a-z0-9-]+\.(inbox|receipts)")
    assert {n for n in used if not per_gateway.fullmatch(n)} <= names, used - names
    assert topology.inbox_queue("x") == "lt.gw.x.inbox"


# --- systemd ---------------------------------------------------------------------------

def _units() -> list[Path]:
    return sorted((DEPLOY / "systemd").glob("lienthong*.service")) + sorted(
        (DEPLOY / "systemd").glob("*.target"))


def _exec_starts(unit: Path) -> list[list[str]]:
    return [shlex.split(line.split("=", 1)[1]) for line in unit.read_text("utf-8").splitlines()
            if line.startswith("ExecStart=")]


def test_systemd_units_run_lienthong_commands_hardened() -> None:
    names = {u.name for u in _units()}
    assert {"lienthong-router@.service", "lienthong-ops.service", "lienthong-setup.service",
            "lienthong.target"} <= names
    setup = _exec_starts(DEPLOY / "systemd" / "lienthong-setup.service")
    assert [c[1:] for c in setup] == [["config", "show"], ["db", "migrate"],
                                      ["topology", "apply"]]
    for unit in _units():
        text = unit.read_text("utf-8")
        for command in _exec_starts(unit):
            assert command[0] == "/opt/lienthong/bin/lienthong"
            _is_lienthong_command([a.replace("%i", "0") for a in command[1:]])
        if unit.suffix == ".service":
            for option in ("User=lienthong", "NoNewPrivileges=yes", "ProtectSystem=strict",
                           "CapabilityBoundingSet=\n", "EnvironmentFile=/etc/lienthong/"):
                assert option in text, f"{unit.name}: {option.strip()} missing"
    router = (DEPLOY / "systemd" / "lienthong-router@.service").read_text("utf-8")
    assert "Requires=lienthong-setup.service" in router and "Restart=on-failure" in router


# directives systemd 252 (Debian 12) knows, of those a unit here may use: the check that
# runs where systemd-analyze does not
_SYSTEMD_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before", "PartOf",
             "StartLimitIntervalSec", "StartLimitBurst"},
    "Service": {"Type", "User", "Group", "EnvironmentFile", "Environment", "ExecStart",
                "ExecStartPre", "RemainAfterExit", "Restart", "RestartSec", "KillSignal",
                "TimeoutStartSec", "TimeoutStopSec", "LimitNOFILE", "MemoryMax",
                "StateDirectory", "ReadWritePaths", "NoNewPrivileges", "ProtectSystem",
                "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                "ProtectClock", "ProtectHostname", "RestrictAddressFamilies",
                "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
                "LockPersonality", "CapabilityBoundingSet", "AmbientCapabilities",
                "SystemCallArchitectures", "SystemCallFilter", "UMask"},
    "Install": {"WantedBy"},
}


def test_systemd_units_parse_with_known_directives() -> None:
    for unit in _units():
        section = None
        for n, line in enumerate(unit.read_text("utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            if m := re.fullmatch(r"\[(\w+)\]", line):
                section = m.group(1)
                assert section in _SYSTEMD_KEYS, f"{unit.name}:{n}: section {section}"
                continue
            key, sep, _ = line.partition("=")
            assert sep and section, f"{unit.name}:{n}: not `Key=value` in a section"
            assert key in _SYSTEMD_KEYS[section], f"{unit.name}:{n}: unknown {key}"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` with ExecStart pointed at this checkout's lienthong."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (Debian: apt-get install systemd); "
                    "test_systemd_units_parse_with_known_directives is the offline part")
    exe = Path(sys.executable).with_name("lienthong")
    assert exe.exists(), exe
    for unit in _units():
        text = unit.read_text("utf-8").replace("/opt/lienthong/bin/lienthong", str(exe))
        (tmp_path / unit.name).write_text(text, "utf-8")
    files = [str(tmp_path / u.name) for u in _units()]
    done = subprocess.run([analyze, "verify", "--man=no", *files], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    # anything it says about our units (an unknown key is only a warning) is a defect
    assert done.returncode == 0, done.stderr
    assert "lienthong" not in done.stderr, done.stderr


def test_env_example_is_accepted_by_settings() -> None:
    env = {}
    for line in (DEPLOY / "systemd" / "lienthong.env.example").read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    settings = Settings.from_env(env)
    assert settings.max_message_bytes == 32505856
    assert settings.amqp_url.startswith("amqps://")


# --- the OCI image ---------------------------------------------------------------------

def test_containerfile_non_root_entrypoint_lienthong() -> None:
    text = (DEPLOY / "oci" / "Containerfile").read_text("utf-8")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r'^ENTRYPOINT \["lienthong"\]$', text, re.M)
    assert all(f"python:{v}" in text for v in ["3.11"]), "the image's Python is the project's"
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"COPY {part}: not in the repository"


# --- compose ---------------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_staging_stack() -> None:
    services = _compose()["services"]
    assert {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "postgres-primary", "postgres-standby",
            "router", "ops", "prometheus", "grafana", "migrate", "topology"} <= set(services)
    lienthong = {n: s for n, s in services.items() if "deploy/oci/Containerfile" in
                 str(s.get("build", {}).get("dockerfile", ""))}
    assert set(lienthong) == {"migrate", "topology", "router", "ops"}
    for service in lienthong.values():
        _is_lienthong_command(service["command"])
    assert services["router"]["depends_on"]["topology"]["condition"] == \
        "service_completed_successfully"
    for service in services.values():  # every file mounted into a container exists
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / "compose" / source).resolve().exists(), source
    for key in _conf_keys(_compose()["configs"]["rabbitmq-conf"]["content"]):
        assert _known_rabbit_key(key), key


def test_compose_against_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    assert checker.exists(), "pip install -e '.[dev]' installs check-jsonschema"
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec",
                           str(DEPLOY / "compose" / "compose.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is needed (make setup installs Debian's prometheus)")
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "lienthong-alerts.yml", tmp_path)
    subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)


# --- Kubernetes ------------------------------------------------------------------------

def _k8s() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text("utf-8"))
    docs = []
    for name in kustomization["resources"]:
        path = DEPLOY / "k8s" / name
        assert path.exists(), name
        docs += [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s() if d["kind"] == kind}


def test_k8s_objects_and_commands() -> None:
    docs = _k8s()
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert {("rabbitmq.com/v1beta1", "RabbitmqCluster"), ("postgresql.cnpg.io/v1", "Cluster"),
            ("apps/v1", "Deployment"), ("v1", "Service"), ("batch/v1", "Job"),
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ("monitoring.coreos.com/v1", "PodMonitor")} <= kinds
    config = _by_kind("ConfigMap")["lienthong-config"]["data"]
    Settings.from_env(config)  # every value is accepted
    pods = [*_by_kind("Deployment").values(), *_by_kind("Job").values()]
    for pod in pods:
        spec = pod["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            _is_lienthong_command(c["args"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
    job = _by_kind("Job")["lienthong-setup"]["spec"]["template"]["spec"]
    assert job["initContainers"][0]["args"] == ["db", "migrate"]
    assert job["containers"][0]["args"] == ["topology", "apply"]
    pg = _by_kind("Cluster")["lienthong-pg"]["spec"]
    assert pg["instances"] >= 2 and pg["minSyncReplicas"] >= 1
    rabbit = _by_kind("RabbitmqCluster")["lienthong-rabbitmq"]["spec"]
    assert rabbit["replicas"] == 3 and rabbit["tls"]["disableNonTLSListeners"] is True
    for key in _conf_keys(rabbit["rabbitmq"]["additionalConfig"]):
        assert _known_rabbit_key(key), key
    assert "max_message_size = 32505856" in rabbit["rabbitmq"]["additionalConfig"]


def _probes(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    container = _by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
    probes = [container[p]["httpGet"] for p in ("livenessProbe", "readinessProbe")]
    return container, probes


def test_ops_probe_paths_and_port_exist_in_the_ops_app() -> None:
    from router.ops.auth import TokenStore
    from router.ops.server import create_app

    app = create_app(Settings(), tokens=TokenStore.parse(""), refresh_interval=None,
                     record_start=False)
    paths = {r.get_info().get("path") for r in app.router.resources()}
    container, probes = _probes("lienthong-ops")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = Settings.from_env(_by_kind("ConfigMap")["lienthong-config"]["data"])
    for probe in probes:
        assert probe["path"] in paths, probe
        assert ports[probe["port"]] == config.ops_port
    assert [p["path"] for p in probes] == ["/healthz", "/readyz"]
    service = _by_kind("Service")["lienthong-ops"]["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    monitor = _by_kind("ServiceMonitor")["lienthong-ops"]["spec"]["endpoints"][0]
    assert monitor["path"] in paths and monitor["port"] == "http"


def test_router_probe_is_served_by_a_router_on_its_metrics_port() -> None:
    from router import metrics

    container, probes = _probes("lienthong-router")
    config = Settings.from_env(_by_kind("ConfigMap")["lienthong-config"]["data"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {ports[p["port"]] for p in probes} == {config.metrics_port}
    with socket.socket() as s:  # the manifest's port may be taken here: the same code path
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    metrics.serve_metrics(free, addr="127.0.0.1")
    for probe in probes:
        with urllib.request.urlopen(f"http://127.0.0.1:{free}{probe['path']}", timeout=5) as r:
            assert r.status == 200
            assert b"lienthong_packages_total" in r.read()


def test_kustomize_builds_offline() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed for `kubectl kustomize` (offline, no cluster)")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(built) == len(_k8s())
    assert all(d["metadata"].get("namespace") == "lienthong" for d in built
               if d["kind"] != "Namespace")


# --- rabbitmq.conf ---------------------------------------------------------------------

def _conf_keys(text: str) -> list[str]:
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, _ = line.partition("=")
            assert sep, f"not `key = value`: {line!r}"
            keys.append(key.strip())
    return keys


def _conf(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


_SCHEMA_KEYS: list[re.Pattern[str]] = []


def _known_rabbit_key(key: str) -> bool:
    """``key`` matches a mapping of the installed RabbitMQ's Cuttlefish schemas (the broker
    and every plugin it ships); ``$name`` segments match any segment."""
    if not _SCHEMA_KEYS:
        schemas = sorted(RABBIT_PLUGINS.glob("rabbitmq_server-*/plugins/*/priv/schema/*.schema"))
        if not schemas:
            pytest.fail("RabbitMQ's schemas are needed (make setup installs rabbitmq-server)")
        for schema in schemas:
            for mapping in re.findall(r'\{mapping,\s*"([^"]+)"', schema.read_text("utf-8")):
                parts = [r"[^.]+" if p.startswith("$") else re.escape(p)
                         for p in mapping.split(".")]
                _SCHEMA_KEYS.append(re.compile(r"\.".join(parts)))
    return any(p.fullmatch(key) for p in _SCHEMA_KEYS)


def test_rabbitmq_conf_keys_are_known_to_rabbitmq() -> None:
    text = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text("utf-8")
    keys = _conf_keys(text)
    assert len(keys) == len(set(keys)), "a key set twice"
    unknown = [k for k in keys if not _known_rabbit_key(k)]
    assert not unknown, unknown
    assert not _known_rabbit_key("max_mesage_size")  # the check can fail


def test_rabbitmq_conf_production_rules() -> None:
    conf = _conf((DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text("utf-8"))
    assert int(conf["max_message_size"]) == Settings().max_message_bytes == 32505856
    assert conf["listeners.tcp"] == "none"  # TLS only
    assert conf["listeners.ssl.default"] == "5671"
    assert conf["ssl_options.verify"] == "verify_peer"
    assert conf["default_user"] != "guest" and conf.get("default_pass") != "guest"
    assert conf["loopback_users.guest"] == "true"
    assert "vm_memory_high_watermark.relative" in conf
    assert "disk_free_limit.absolute" in conf
    assert conf["queue_leader_locator"] == "balanced"
    assert conf["cluster_partition_handling"] == "pause_minority"
