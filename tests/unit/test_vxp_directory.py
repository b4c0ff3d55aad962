"""The VXP directory answers (adapters/vxp/directory.py): their shapes from the mirrored feed,
how often the mirror asks the hub, and what is served when the hub does not answer. The
real feed over RabbitMQ is in tests/integration/test_vxp.py."""

from __future__ import annotations

from typing import Any, cast

import pytest

from adapters.client import GatewayClient
from adapters.vxp.directory import VxpDirectory
from adapters.vxp.envelope import VxpFailure
from schemas.reasons import Reason


def _rec(code: str, id: int, version: int, *, parent: str | None = None,
         qd20: tuple[str, ...] = (), deleted: bool = False) -> dict[str, Any]:
    return {"code": code, "id": id, "name": f"Cơ quan {id}", "parent": parent,
            "gateway": "gw", "status": "active", "aliases": list(qd20), "qd20": list(qd20),
            "qcvn102": [code], "version": version, "deleted": deleted,
            "modified_at": "2026-12-01T17:30:00+00:00"}


TOP, CHILD, GRANDCHILD, GONE = "000.00.00.H41", "000.01.00.H41", "000.01.01.H41", "000.02.00.H41"
FEED = [_rec(TOP, 1, 1, qd20=("H41",)), _rec(CHILD, 2, 2, parent=TOP, qd20=("H41.01",)),
        _rec(GRANDCHILD, 3, 3, parent=CHILD), _rec(GONE, 4, 4, parent=TOP, deleted=True)]


class FakeHub:
    """Answers ``ask_hub`` like the routers do: pages of ``records`` after ``after``."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.asked: list[int] = []
        self.down = False

    async def ask_hub(self, key: str, body: dict[str, Any]) -> tuple[str, Any]:
        assert key == "directory"
        if self.down:
            raise TimeoutError
        self.asked.append(int(body["after"]))
        page = [r for r in self.records if r["version"] > body["after"]]
        latest = max((r["version"] for r in self.records), default=0)
        return "directory.page", {"records": page, "version": latest, "latest": latest,
                                  "more": False}


def _client(hub: FakeHub) -> GatewayClient:
    return cast(GatewayClient, hub)


async def test_answers_have_the_sdk_shapes() -> None:
    directory = VxpDirectory()
    await directory.refresh(_client(FakeHub(FEED)))
    agencies = {a["code"]: a for a in directory.agencies()}
    assert set(agencies) == {TOP, CHILD, GRANDCHILD}  # the deleted one is not listed
    assert agencies[TOP] == {"id": 1, "code": TOP, "pid": 0, "name": "Cơ quan 1", "mail": "",
                             "oldCode": "H41"}
    assert agencies[CHILD]["pid"] == 1 and agencies[GRANDCHILD]["oldCode"] == ""

    qd20 = {a["code"]: a for a in directory.agencies_qd20()}
    assert set(qd20) == {"H41", "H41.01", GRANDCHILD}  # no QĐ 20 code: its canonical one
    assert qd20["H41.01"] == {"id": 2, "code": "H41.01", "pid": 1, "name": "Cơ quan 2",
                              "mail": "", "code102": CHILD}
    assert [a["code"] for a in directory.agencies_qd20(1)] == ["H41"]
    assert [a["code"] for a in directory.agencies_qd20(3)] == [GRANDCHILD]

    units = {u["code"]: u for u in directory.synchronize_unit()}
    assert set(units) == {TOP, CHILD, GRANDCHILD, GONE}
    assert units[GONE]["deleted"] is True and units[GONE]["version"] == 4
    assert units[GONE]["pid"] == 1
    assert units[TOP]["modifyDate"] == "2026-12-02 00:30:00"  # Vietnam time, UTC+7
    assert units[TOP]["centerCode"] == "gw" and units[TOP]["isAgency"] is True


async def test_asks_the_hub_at_most_once_per_interval_and_only_for_changes() -> None:
    hub = FakeHub(FEED[:2])
    directory = VxpDirectory(interval=3600.0)
    await directory.refresh(_client(hub))
    await directory.refresh(_client(hub))
    assert hub.asked == [0]  # the second call within the interval asked nothing

    eager = VxpDirectory(interval=0.0)
    await eager.refresh(_client(hub))
    hub.records = FEED
    await eager.refresh(_client(hub))
    assert hub.asked == [0, 0, 2]  # then only what changed after version 2
    assert len(eager.synchronize_unit()) == 4


async def test_the_last_directory_is_served_when_the_hub_does_not_answer() -> None:
    hub = FakeHub(FEED)
    never = VxpDirectory(interval=0.0)
    hub.down = True
    with pytest.raises(VxpFailure) as info:
        await never.refresh(_client(hub))
    assert info.value.reason is Reason.VXP_HUB_TIMEOUT

    now = [0.0]
    synced = VxpDirectory(interval=10.0, clock=lambda: now[0])
    hub.down = False
    await synced.refresh(_client(hub))
    assert hub.asked == [0]
    now[0] = 11.0
    hub.down = True
    await synced.refresh(_client(hub))  # no failure: what it had is served
    assert len(synced.synchronize_unit()) == 4

    # after a failed round it waits for the interval too, not asking on every request
    hub.down = False
    now[0] = 12.0
    await synced.refresh(_client(hub))
    assert hub.asked == [0]
    now[0] = 22.0
    await synced.refresh(_client(hub))
    assert hub.asked == [0, 4]
