"""The layout's promises (README "Layout"): the CLI and the HTTP handlers are thin — every
query lives in a library module the CLI, the API and the tests share."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b")
THIN = [
    *sorted((ROOT / "router" / "cli").glob("*.py")),
    ROOT / "router" / "ops" / "api.py",
    ROOT / "router" / "ops" / "audit_api.py",
    ROOT / "router" / "ops" / "server.py",
]


@pytest.mark.parametrize("path", THIN, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_in_commands_or_handlers(path: Path) -> None:
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SQL.search(line)
    ]
    assert not found, "SQL belongs in a library module:\n" + "\n".join(found)


def test_the_route_reads_from_file_names() -> None:
    """The modules the README's Layout names exist (a rename must update the README)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b((?:[a-z_]+/)*[a-z_]+\.py)\b", layout))
    assert len(named) > 20, "the Layout section names too few modules"
    sources = [str(f.relative_to(ROOT)) for top in ("schemas", "adapters", "router", "tests")
               for f in (ROOT / top).rglob("*.py")]
    missing = sorted(n for n in named
                     if not any(s == n or s.endswith("/" + n) for s in sources))
    assert not missing, f"README Layout names modules that do not exist: {missing}"
