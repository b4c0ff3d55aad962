"""The quorum-queue report `topology apply` prints: when leaders count as uneven, and
what the operator is told to run for missing replicas."""

from __future__ import annotations

from router.quorum import QuorumReport

NODES = ["rabbit@a", "rabbit@b", "rabbit@c"]


def test_leaders_within_one_of_each_other_are_balanced() -> None:
    assert QuorumReport(NODES, 7, {"rabbit@a": 3, "rabbit@b": 2, "rabbit@c": 2}).balanced
    # a node leading nothing (just restarted) counts as 0
    assert not QuorumReport(NODES, 7, {"rabbit@a": 4, "rabbit@b": 3}).balanced


def test_missing_replicas_become_one_grow_command_per_node() -> None:
    r = QuorumReport(NODES, 3, {"rabbit@a": 3},
                     missing={"lt.router.in": ["rabbit@c"], "lt.parking": ["rabbit@b",
                                                                           "rabbit@c"]})
    assert r.grow_commands("lienthong") == [
        "rabbitmq-queues grow rabbit@b all --vhost-pattern '^lienthong$' --queue-pattern '^lt\\.'",
        "rabbitmq-queues grow rabbit@c all --vhost-pattern '^lienthong$' --queue-pattern '^lt\\.'",
    ]
    text = "\n".join(r.lines("lienthong"))
    assert "queue lt.parking has no replica on rabbit@b, rabbit@c" in text
    assert "leaders rabbit@a: 3, rabbit@b: 0, rabbit@c: 0" in text
