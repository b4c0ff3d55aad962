"""The watch folder's pure rules: which names are still being written, and the message id
a file is sent with (the same bytes always get the same id)."""

from __future__ import annotations

import pytest

from adapters.watch import is_complete_name, message_id_for


@pytest.mark.parametrize("name", ["cong-van.edxml", "tra-loi.xml", "CV 12.EDXML", "a"])
def test_complete_names_are_sent(name: str) -> None:
    assert is_complete_name(name)


@pytest.mark.parametrize("name", [".cong-van.edxml.tmp", "cong-van.edxml.part", "x.TMP",
                                  "x.partial", "x.crdownload", "x.download", ".x.swp",
                                  "x.edxml~", "~$x.edxml", ".hidden", ""])
def test_names_being_written_are_left_alone(name: str) -> None:
    assert not is_complete_name(name)


def test_the_message_id_follows_the_bytes_and_the_gateway() -> None:
    a = message_id_for("lgsp-nghean", b"<edXML/>")
    assert a == message_id_for("lgsp-nghean", b"<edXML/>")  # after a restart: the same
    assert a != message_id_for("lgsp-nghean", b"<edXML />")
    assert a != message_id_for("vpcp", b"<edXML/>")
