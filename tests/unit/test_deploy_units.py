"""The systemd units in deploy/systemd: systemd accepts them, the commands they run exist,
and the environment file sets only variables lienthong reads."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli import main

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
LIENTHONG = "/opt/lienthong/.venv/bin/lienthong"


def _exec_lines() -> list[list[str]]:
    return [shlex.split(line.split("=", 1)[1])
            for unit in UNITS.glob("*.service")
            for line in unit.read_text("utf-8").splitlines() if line.startswith("ExecStart=")]


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian: systemd) is needed to check the units"
    # the same units, pointing at this checkout's lienthong and an existing env file
    env = tmp_path / "lienthong.env"
    env.write_text("", "utf-8")
    for unit in UNITS.glob("*.service"):
        text = (unit.read_text("utf-8")
                .replace(LIENTHONG, str(Path(sys.executable).parent / "lienthong"))
                .replace("User=lienthong", "User=root").replace("Group=lienthong", "Group=root")
                .replace("/etc/lienthong/lienthong.env", str(env)))
        (tmp_path / unit.name.replace("@.", "@1.")).write_text(text, "utf-8")
    done = subprocess.run([analyze, "verify", *map(str, sorted(tmp_path.glob("*.service")))],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("argv", _exec_lines(), ids=lambda a: " ".join(a[1:]))
def test_every_command_a_unit_runs_exists(argv: list[str]) -> None:
    assert argv[0] == LIENTHONG
    result = CliRunner().invoke(main, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_the_environment_file_sets_only_variables_lienthong_reads() -> None:
    names = re.findall(r"^(LIENTHONG_[A-Z_]+)=", (UNITS / "lienthong.env.example")
                       .read_text("utf-8"), flags=re.M)
    units = "".join(u.read_text("utf-8") for u in UNITS.glob("*.service"))
    names += re.findall(r"Environment=(LIENTHONG_[A-Z_]+)=", units)
    source = "".join(p.read_text("utf-8") for d in ("router", "adapters")
                     for p in (ROOT / d).rglob("*.py"))
    unread = [n for n in names if f'"{n}"' not in source]
    assert names and not unread, unread
