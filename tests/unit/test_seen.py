"""The SDK's duplicate filters: in memory, and in a SQLite file that outlives the process."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import CopyFilter, DurableSeenCopies, SeenCopies


def test_both_filters_are_copy_filters(tmp_path: Path) -> None:
    durable = DurableSeenCopies(tmp_path / "seen.sqlite")
    assert isinstance(durable, CopyFilter)
    assert isinstance(SeenCopies(), CopyFilter)
    durable.close()


def test_durable_filter_remembers_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "gw" / "seen.sqlite"  # the folder is created
    first = DurableSeenCopies(path)
    ids = [str(uuid.uuid4()) for _ in range(50)]
    for i in ids:
        first.add(i)
    first.add(ids[0])  # the same copy twice is one entry
    first.close()
    again = DurableSeenCopies(path)
    assert all(i in again for i in ids)
    assert str(uuid.uuid4()) not in again
    assert None not in again and 7 not in again
    assert len(again) == 50
    again.close()


def _add_then_die(path: str, copy_id: str) -> None:
    DurableSeenCopies(path).add(copy_id)
    os._exit(0)  # no close, no flush: like a process killed right after the ack


def test_an_id_is_kept_when_the_process_dies_without_closing(tmp_path: Path) -> None:
    path = str(tmp_path / "seen.sqlite")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_add_then_die, args=(path, "copy-1"))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    seen = DurableSeenCopies(path)
    assert "copy-1" in seen
    seen.close()


def test_durable_filter_keeps_the_newest_ids_when_full(tmp_path: Path) -> None:
    seen = DurableSeenCopies(tmp_path / "seen.sqlite", capacity=1_500)
    ids = [f"copy-{n}" for n in range(3_000)]
    for i in ids:
        seen.add(i)
    # trimmed every 1,000 adds: after 3,000 at most the newest 1,500 are kept
    assert len(seen) == 1_500
    assert ids[-1] in seen and ids[-1_500] in seen
    assert ids[0] not in seen and ids[1_499] not in seen
    seen.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), max_size=60), st.text(min_size=1, max_size=40))
def test_memory_and_durable_filters_agree(ids: list[str], probe: str) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"lt-seen-{uuid.uuid4().hex}.sqlite"
    durable = DurableSeenCopies(path)
    memory = SeenCopies()
    try:
        for i in ids:
            durable.add(i)
            memory.add(i)
        for i in [*ids, probe]:
            assert (i in durable) == (i in memory) == (i in ids)
    finally:
        durable.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
