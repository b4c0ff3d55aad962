"""lienthong-gateway, the SDK as a distribution of its own: built offline from the repo,
installed into a fresh venv without the hub's packages, its README quick-start run there
against a throwaway hub."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from router.directory.registry import AgencyRow
from tests.hub import Hub

ROOT = Path(__file__).resolve().parents[2]
HUB_ONLY = {"asyncpg", "aiohttp", "click", "rich", "structlog", "prometheus-client", "lienthong"}


def _quick_start() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Quick start (a test installs the wheel"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's quick-start block"
    return match.group(1)


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the python of a fresh venv it is installed in, with its dependencies)."""
    work = tmp_path_factory.mktemp("sdk")
    # offline: no index, no build isolation (setuptools and wheel are dev dependencies)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", work / "dist", ROOT / "sdk", cwd=work)
    wheel = next((work / "dist").glob("lienthong_gateway-*.whl"))
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    python = work / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", wheel, cwd=work)
    return wheel, python


def test_the_wheel_holds_the_sdk_and_the_contract_typed(sdk_venv: tuple[Path, Path]) -> None:
    wheel, _ = sdk_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for d in ("adapters", "schemas")
               for p in (ROOT / d).rglob("*.py")}
    assert shipped <= names, shipped - names  # every module, new ones included
    assert {"adapters/py.typed", "schemas/py.typed"} <= names
    assert any(n.startswith("schemas/xsd/") and n.endswith(".xsd") for n in names)
    assert not any(n.startswith("router/") for n in names)
    core, extras = _requirements(wheel)
    assert sorted(core) == ["aio-pika", "aiormq", "cryptography", "lxml", "pamqp", "yarl"]
    assert extras == {"vxp": {"aiohttp", "asyncpg", "structlog"}, "watch": {"structlog"}}


def _requirements(wheel: Path) -> tuple[set[str], dict[str, set[str]]]:
    """(the distributions every install gets, those of each extra) from the wheel's METADATA."""
    names = zipfile.ZipFile(wheel).namelist()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    core: set[str] = set()
    extras: dict[str, set[str]] = {}
    for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        spec = line.split(":", 1)[1].strip()
        dist = re.split(r"[<>=!~ ;\[]", spec)[0].lower()
        extra = re.search(r"extra\s*==\s*[\"']([\w-]+)[\"']", spec)
        if extra:
            extras.setdefault(extra.group(1), set()).add(dist)
        else:
            core.add(dist)
    return core, extras


# the import name of each third-party distribution adapters/ and schemas/ may use
_DISTRIBUTION = {"aio_pika": "aio-pika", "aiormq": "aiormq", "lxml": "lxml",
                 "cryptography": "cryptography", "aiohttp": "aiohttp", "asyncpg": "asyncpg",
                 "structlog": "structlog"}
# the modules that need an extra, and which one
_EXTRA_OF = {"adapters/vxp/": "vxp", "adapters/watch.py": "watch"}


def test_every_third_party_import_of_the_sdk_is_declared(sdk_venv: tuple[Path, Path]) -> None:
    """A module that imports a package the wheel does not declare breaks on a gateway's
    machine only; every import is declared by the core or by the module's extra."""
    wheel, _ = sdk_venv
    core, extras = _requirements(wheel)
    stdlib = set(sys.stdlib_module_names)
    undeclared = []
    for d in ("adapters", "schemas"):
        for path in (ROOT / d).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            extra = next((e for prefix, e in _EXTRA_OF.items() if rel.startswith(prefix)), None)
            allowed = core | extras.get(extra or "", set())
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    if top in stdlib or top in {"adapters", "schemas", "__future__"}:
                        continue
                    if _DISTRIBUTION.get(top, top) not in allowed:
                        undeclared.append(f"{rel}: {top}")
    assert not undeclared, undeclared


def test_the_fresh_venv_has_no_hub_package(sdk_venv: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = sdk_venv
    listed = _run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout
    installed = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "lienthong-gateway" in installed
    assert not installed & HUB_ONLY, installed & HUB_ONLY
    probe = _run(python, "-c", "import importlib.util as u, adapters, schemas; "
                 "print(adapters.__file__); print(u.find_spec('router'))", cwd=tmp_path)
    adapters_file, router_spec = probe.stdout.splitlines()
    assert "site-packages" in adapters_file and router_spec == "None"


async def test_the_readme_quick_start_runs_from_the_fresh_venv(
    hub: Hub, sdk_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    _, python = sdk_venv
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    script = tmp_path / "quick_start.py"
    script.write_text(_quick_start(), encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", ""), "LIENTHONG_GATEWAY_URL": hub.gateway_url("vpcp"),
           "LIENTHONG_GATEWAY_ID": "vpcp"}
    proc = await asyncio.create_subprocess_exec(
        str(python), str(script), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:]
    kind, hub_id, reason = out.decode().splitlines()[0].split(" ", 2)
    assert (kind, reason) == ("accepted", "None"), out.decode()
    # the recipient's gateway got the document the quick-start sent
    got = None
    async with hub.client("lgsp-nghean") as na:
        async for msg in na.inbox(timeout=30):
            got = msg
            await msg.ack()
            break
    assert got is not None, "the document reached the recipient's gateway"
    assert (got.hub_id, got.sender, got.document_id) == (
        hub_id, "000.00.00.G22", "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT")
