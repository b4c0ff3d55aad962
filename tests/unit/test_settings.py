"""Settings: every variable read in one place, validated with its name in the error, shown
with its source and secrets hidden, and documented in the README table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli import main as cli
from router.settings import Settings, SettingsError, variables
from schemas import Reason

REPO = Path(__file__).resolve().parents[2]


def _problems(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert info.value.reason is Reason.SETTING_INVALID
    return "\n".join(info.value.problems)


def test_defaults_from_an_empty_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.batch_size == 200 and s.log_level == "INFO" and s.metrics_port is None
    assert {r["source"] for r in s.effective()} == {"default"}


def test_a_bad_integer_names_its_variable() -> None:
    assert "LIENTHONG_MAX_RECIPIENTS='many': not an integer" in _problems(
        {"LIENTHONG_MAX_RECIPIENTS": "many"})


def test_a_mistyped_log_level_is_refused_not_info() -> None:
    assert "LIENTHONG_LOG_LEVEL='inf'" in _problems({"LIENTHONG_LOG_LEVEL": "inf"})
    assert Settings.from_env({"LIENTHONG_LOG_LEVEL": "debug"}).log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LIENTHONG_BATCH_SIZE", "0", "must be at least 1"),
        ("LIENTHONG_BATCH_SIZE", "-5", "must be at least 1"),
        ("LIENTHONG_BATCH_WAIT_MS", "-1", "must be at least 0"),
        ("LIENTHONG_MAX_PACKAGE_BYTES", str(2**30), "must be at most"),
        ("LIENTHONG_DELIVERY_LIMIT", "0", "must be at least 1"),
        ("LIENTHONG_METRICS_PORT", "70000", "must be at most 65535"),
        ("LIENTHONG_OPS_PORT", "http", "not an integer"),
        ("LIENTHONG_NOT_ARRIVED_MINUTES", "nan", "not a finite number"),
        ("LIENTHONG_OPS_STALE_SECONDS", "0", "must be at least 1"),
        ("LIENTHONG_AMQP_URL", "localhost", "not a URL"),
    ],
)
def test_ranges_are_checked(name: str, value: str, message: str) -> None:
    problems = _problems({name: value})
    assert name in problems and message in problems


def test_every_bad_variable_is_named_at_once() -> None:
    problems = _problems({"LIENTHONG_BATCH_SIZE": "0", "LIENTHONG_LOG_LEVEL": "loud",
                          "LIENTHONG_SWEEP_SECONDS": "x"})
    for name in ("LIENTHONG_BATCH_SIZE", "LIENTHONG_LOG_LEVEL", "LIENTHONG_SWEEP_SECONDS"):
        assert name in problems


def test_values_are_parsed_and_their_source_kept() -> None:
    s = Settings.from_env({"LIENTHONG_BATCH_SIZE": " 50 ", "LIENTHONG_METRICS_PORT": "off",
                           "LIENTHONG_SWEEP_SECONDS": "", "LIENTHONG_HUB_KEY": "/k.pem"})
    assert (s.batch_size, s.metrics_port, s.sweep_seconds, s.hub_key) == (50, None, 30, "/k.pem")
    assert s.source("batch_size") == "env" and s.source("sweep_seconds") == "default"


def test_a_key_without_its_certificate_is_refused() -> None:
    assert "LIENTHONG_TLS_KEY is set without LIENTHONG_TLS_CERT" in _problems(
        {"LIENTHONG_TLS_KEY": "/k.pem"})


def _config_show(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, ["config", "show", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


SECRET_ENV = {
    "LIENTHONG_AMQP_URL": "amqps://hub:s3cr3t-amqp@mq.example:5671/lienthong",
    "LIENTHONG_DATABASE_URL": "postgresql://lt:s3cr3t-pg@db.example/lienthong",
    "LIENTHONG_MANAGEMENT_URL": "https://admin:s3cr3t-mgmt@mq.example:15671",
    "LIENTHONG_OPS_TOKENS": "alice:operator:s3cr3t-token-0123456789abcdef",
    "LIENTHONG_BATCH_SIZE": "64",
}


def test_config_show_redacts_secrets_and_names_sources() -> None:
    text = _config_show(SECRET_ENV)
    assert "s3cr3t" not in text
    assert "amqps://hub:***@mq.example:5671/lienthong" in text
    assert re.search(r"LIENTHONG_BATCH_SIZE\s+env\s+64", text)
    assert re.search(r"LIENTHONG_BATCH_WAIT_MS\s+default\s+20", text)


def test_config_show_names_unknown_variables() -> None:
    result = CliRunner().invoke(cli, ["config", "show"], env={
        "LIENTHONG_BATCH_SIZ": "64", "LIENTHONG_ENABLE_FAULTS": "1"})
    assert result.exit_code == 0
    assert "not used by lienthong" in result.stderr
    assert "LIENTHONG_BATCH_SIZ," in result.stderr and "LIENTHONG_ENABLE_FAULTS" in result.stderr
    assert re.search(r"LIENTHONG_BATCH_SIZE\s+default\s+200", result.stdout)


def test_config_show_json_lists_every_variable() -> None:
    rows = json.loads(_config_show(SECRET_ENV, "--json"))
    assert "s3cr3t" not in json.dumps(rows)
    by_name = {r["variable"]: r for r in rows}
    assert set(by_name) == {f.metadata["env"] for f in variables()}
    assert by_name["LIENTHONG_OPS_TOKENS"]["value"] == "***"
    assert by_name["LIENTHONG_BATCH_SIZE"] == {
        "variable": "LIENTHONG_BATCH_SIZE", "value": 64, "source": "env",
        "meaning": by_name["LIENTHONG_BATCH_SIZE"]["meaning"]}


def test_a_bad_setting_stops_startup_with_one_clear_message() -> None:
    env = {"PATH": "/usr/bin:/bin", "LIENTHONG_BATCH_SIZE": "0", "LIENTHONG_LOG_LEVEL": "verbose"}
    done = subprocess.run([sys.executable, "-m", "router.cli", "router"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "SETTING_INVALID" in done.stderr
    assert "LIENTHONG_BATCH_SIZE='0': must be at least 1" in done.stderr
    assert "LIENTHONG_LOG_LEVEL='verbose'" in done.stderr


def _readme_table() -> dict[str, str]:
    text = (REPO / "README.md").read_text("utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`(LIENTHONG_\w+)`", cells[0]) if len(cells) >= 3 else []
        for name in names:
            assert name not in rows, f"{name} twice in the README table"
            rows[name] = cells[1]
    return rows


def test_readme_table_matches_the_settings() -> None:
    table = _readme_table()
    assert set(table) == {f.metadata["env"] for f in variables()}
    for f in variables():
        shown = table[f.metadata["env"]]
        if f.default is None:
            assert shown == "unset", f.name
        elif f.default == "":
            assert shown == "empty", f.name
        else:
            value = f.default
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            assert shown.startswith(f"`{value}`"), (f.name, shown)


def test_no_environment_read_outside_settings() -> None:
    offenders = []
    for folder in ("router", "bench", "demo", "adapters", "schemas"):
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "router" / "settings.py":
                continue
            text = path.read_text("utf-8")
            if re.search(r"os\.environ|os\.getenv|getenv\(", text):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_samples_default_beside_the_repository_and_the_demo_sends_them_only_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demo.hub import samples_dir as demo_samples

    monkeypatch.delenv("LIENTHONG_SAMPLES", raising=False)
    expected = REPO.parent / "shared" / "edxml-samples"
    assert Settings.from_env({}).samples_dir == expected  # where the tests look
    assert demo_samples() is None  # a bare clone's demo stands on its own packages
    monkeypatch.setenv("LIENTHONG_SAMPLES", "/srv/samples")
    assert demo_samples() == Path("/srv/samples")
