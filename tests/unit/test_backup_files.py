"""What a backup keeps of the broker, and how an altered backup is refused (no services)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from router.recovery import backup
from router.settings import Settings
from schemas.reasons import Reason

DEFINITIONS: dict[str, Any] = {
    "rabbitmq_version": "3.10.8",
    "vhosts": [{"name": "lienthong"}, {"name": "other"}],
    "users": [{"name": "admin", "password_hash": "a"}, {"name": "gw.vpcp", "password_hash": "b"},
              {"name": "gw.other", "password_hash": "c"}, {"name": "nobody"}],
    "permissions": [
        {"user": "admin", "vhost": "lienthong", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "gw.vpcp", "vhost": "lienthong", "configure": "^$", "write": "x", "read": "y"},
        {"user": "gw.other", "vhost": "other", "configure": "", "write": "", "read": ""},
    ],
    "topic_permissions": [],
    "parameters": [],
    "policies": [{"vhost": "lienthong", "name": "p"}, {"vhost": "other", "name": "q"}],
    "queues": [{"vhost": "lienthong", "name": "lt.router.in"}, {"vhost": "other", "name": "x"}],
    "exchanges": [{"vhost": "lienthong", "name": "lt.submit"}],
    "bindings": [{"vhost": "other", "source": "a"}],
}


def test_broker_part_keeps_one_vhost_and_its_users_but_the_operator() -> None:
    part = backup.broker_part(DEFINITIONS, "lienthong", skip_users=frozenset({"admin"}))
    assert part["vhosts"] == [{"name": "lienthong"}]
    assert [u["name"] for u in part["users"]] == ["gw.vpcp"]  # with its password hash
    assert part["users"][0]["password_hash"] == "b"
    assert [q["name"] for q in part["queues"]] == ["lt.router.in"]
    assert [p["name"] for p in part["policies"]] == ["p"]
    assert part["bindings"] == []
    assert {p["user"] for p in part["permissions"]} == {"admin", "gw.vpcp"}


def _backup_dir(tmp_path: Path) -> Path:
    d = tmp_path / "b"
    d.mkdir()
    files = {}
    for name, data in (("ledger.dump", b"PGDMP..."), ("broker.json", b"{}")):
        (d / name).write_bytes(data)
        files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"format": backup.FORMAT, "created_at": "2026-12-01T00:00:00+00:00",
                "vhost": "lienthong", "database": "lienthong", "files": files,
                "ledger": {"documents": 1, "deliveries": 1, "deliveries_queued": 1},
                "broker": {}}
    (d / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return d


def test_an_intact_backup_verifies(tmp_path: Path) -> None:
    assert backup.verify(_backup_dir(tmp_path)).ledger["documents"] == 1


@pytest.mark.parametrize("damage", ["altered", "missing", "no manifest", "other format"])
def test_an_altered_backup_is_refused_before_anything_is_restored(
    tmp_path: Path, damage: str
) -> None:
    d = _backup_dir(tmp_path)
    if damage == "altered":
        (d / "ledger.dump").write_bytes(b"PGDMP.!.")
    elif damage == "missing":
        (d / "broker.json").unlink()
    elif damage == "no manifest":
        (d / "manifest.json").unlink()
    else:
        m = json.loads((d / "manifest.json").read_text("utf-8"))
        (d / "manifest.json").write_text(json.dumps({**m, "format": "x/9"}), "utf-8")
    with pytest.raises(backup.BackupError) as caught:
        backup.verify(d)
    assert caught.value.reason is Reason.BACKUP_CORRUPT
    # restore refuses it first: the (unreachable) database is never touched
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(backup.BackupError) as again:
        asyncio.run(backup.restore(settings, d, actor="test"))
    assert again.value.reason is Reason.BACKUP_CORRUPT


def test_a_missing_pg_dump_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(backup.BackupError) as caught:
        asyncio.run(backup.backup(Settings(), tmp_path / "new", actor="test"))
    assert caught.value.reason is Reason.BACKUP_TOOL_MISSING
    assert not (tmp_path / "new").exists()


def test_the_password_never_reaches_the_command_line() -> None:
    url, env = backup._libpq("postgresql://lt:s%40cret@db.example:5433/ledger?sslmode=require")
    assert url == "postgresql://lt@db.example:5433/ledger?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret"
