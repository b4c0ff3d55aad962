"""Quorum queues across a RabbitMQ cluster: membership and leader placement.

Every hub queue is a quorum queue: replicated on the cluster's nodes, with one leader
serving it. Two things drift while a cluster lives:

* **membership**: a queue declared while a node was down, or a node replaced by a new one,
  leaves queues without a replica on a running node (less redundancy than it looks);
* **leaders**: after a node restarts, the queues it led have moved to the others and stay
  there: one node ends up serving most queues.

:func:`check` reads both through the management API and, when leaders are uneven, asks the
cluster to rebalance them (``POST /api/rebalance/queues``). RabbitMQ 3.10's management API
cannot add a replica: for queues missing one it returns the operator's command
(``rabbitmq-queues grow``) instead. ``lienthong topology apply`` runs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from router.broker_admin import BrokerAdmin

__all__ = ["QuorumReport", "check"]


@dataclass
class QuorumReport:
    nodes: list[str]  # running nodes of the cluster
    queues: int = 0  # quorum queues in the vhost
    leaders: dict[str, int] = field(default_factory=dict)  # node -> queues it leads
    missing: dict[str, list[str]] = field(default_factory=dict)  # queue -> running nodes
    #                                                               without a replica of it
    rebalanced: bool = False  # leaders were uneven: a rebalance was requested

    @property
    def balanced(self) -> bool:
        counts = [self.leaders.get(n, 0) for n in self.nodes]
        return not counts or max(counts) - min(counts) <= 1

    def grow_commands(self, vhost: str) -> list[str]:
        """What an operator runs (on any node) to give every queue a replica on each
        running node it lacks."""
        lacking = sorted({n for nodes in self.missing.values() for n in nodes})
        return [f"rabbitmq-queues grow {n} all --vhost-pattern '^{vhost}$' "
                f"--queue-pattern '^lt\\.'" for n in lacking]

    def lines(self, vhost: str) -> list[str]:
        """The report, one line per fact (English; operator tools print it as is)."""
        spread = ", ".join(f"{n}: {self.leaders.get(n, 0)}" for n in self.nodes)
        out = [f"{len(self.nodes)} running nodes; {self.queues} quorum queues; leaders {spread}"]
        if self.rebalanced:
            out.append("leaders were uneven: rebalance requested (takes a few seconds)")
        for q, nodes in sorted(self.missing.items()):
            out.append(f"queue {q} has no replica on {', '.join(nodes)}")
        out += [f"to add the missing replicas run: {c}" for c in self.grow_commands(vhost)]
        return out


async def check(admin: BrokerAdmin, vhost: str, *, rebalance: bool = True) -> QuorumReport:
    """Membership and leaders of the vhost's quorum queues; rebalance when uneven."""
    report = QuorumReport(nodes=await admin.running_nodes())
    leaders: Counter[str] = Counter()
    for q in await admin.list_queues(vhost):
        if q.get("type") != "quorum":
            continue
        report.queues += 1
        leader = q.get("leader") or q.get("node")
        if leader:
            leaders[str(leader)] += 1
        members = {str(m) for m in q.get("members") or []}
        lacking = [n for n in report.nodes if n not in members]
        if lacking:
            report.missing[str(q["name"])] = lacking
    report.leaders = dict(leaders)
    if rebalance and len(report.nodes) > 1 and not report.balanced:
        await admin.rebalance_queues()
        report.rebalanced = True
    return report
