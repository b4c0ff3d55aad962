"""The README's "Package specs" names every key `lienthong package build` accepts: a
gateway developer needs no source file to write a spec."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from schemas import spec

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Package specs")
    return readme[start:readme.index("\n## ", start)]


def _spec_keys() -> set[str]:
    """Every key string spec.py checks (the tuples and sets of names it passes _known)."""
    tree = ast.parse((ROOT / "schemas" / "spec.py").read_text(encoding="utf-8"))
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.Set) and len(node.elts) >= 2 and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
        ):
            keys |= {str(e.value) for e in node.elts}  # type: ignore[attr-defined]
    return keys


def test_every_spec_key_is_documented() -> None:
    spans = re.findall(r"`([^`]*)`", _section())
    documented = {w for span in spans for w in re.findall(r"[a-z_0-9]+", span)}
    keys = _spec_keys()
    assert {"organ_id", "staff_info", "receiver_type", "content_id"} <= keys  # the scan works
    assert keys - documented == set()


def _first_column(table_header: str) -> set[str]:
    section = _section()
    table = section[section.index(table_header):].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines()[2:]]
    return {k for cell in rows for k in re.findall(r"`([a-z_]+)`", cell)}


def test_top_level_keys_have_their_own_rows() -> None:
    assert _first_column("| document key") == set(spec._EDOC_KEYS)
    assert _first_column("| status key") == set(spec._STATUS_KEYS) - {"kind"}
