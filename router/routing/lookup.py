"""The facts a batch's decisions need, read from the ledger in one round trip.

The sending gateways, every agency code the batch names (by any alias), the documents its
statuses and business packages refer to and their deliveries to the batch's agencies (the
state a status acts on, read without a lock: the batch's one statement writes a status
only if that state is still the same), and, only for messages without ``user_id``, which
active gateways' topic permissions admit their routing keys.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

from router.directory.registry import gateway_topic_regex
from router.ledger import Conn
from router.routing.decide import Agency, DeliveryState, Facts, Gateway, Target, Wanted

__all__ = ["look_up"]

_LOOKUPS_SQL = """
SELECT
  (SELECT coalesce(json_agg(json_build_array(g.id, g.amqp_user, g.status)), '[]')
     FROM gateways g WHERE g.amqp_user = ANY($1::text[])) AS gateways,
  (SELECT coalesce(json_agg(json_build_array(al.alias, a.id, a.code, a.gateway_id, a.status)),
                   '[]')
     FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
     WHERE al.alias = ANY($2::text[])) AS agencies,
  (SELECT coalesce(json_agg(json_build_array(d.hub_id, d.sender_agency_id, d.sender_gateway_id,
                                             d.sender_code, d.edxml_document_id)
                            ORDER BY d.received_at DESC), '[]')
     FROM documents d
     WHERE d.kind = 'edoc' AND d.edxml_document_id = ANY($3::text[])) AS targets,
  (SELECT coalesce(json_agg(json_build_array(d.id, d.state, d.recall_state, d.recipient_code,
                                             a.code)), '[]')
     FROM (SELECT DISTINCT doc, alias FROM unnest($4::text[], $5::text[]) AS k(doc, alias)) k
     -- one index probe per pair and step, whatever the ledger's size (OFFSET 0 keeps each
     -- step a probe: the planner may not turn them into a scan of deliveries)
     CROSS JOIN LATERAL (SELECT t.hub_id FROM documents t
                         WHERE t.edxml_document_id = k.doc AND t.kind = 'edoc' OFFSET 0) t
     CROSS JOIN LATERAL (SELECT al.agency_id FROM agency_aliases al
                         WHERE al.alias = k.alias OFFSET 0) al
     CROSS JOIN LATERAL (SELECT d.id, d.state, d.recall_state, d.recipient_code
                         FROM deliveries d
                         WHERE d.hub_id = t.hub_id AND d.recipient_agency_id = al.agency_id
                         OFFSET 0) d
     JOIN agencies a ON a.id = al.agency_id) AS deliveries
"""

# every active gateway with its served patterns and, of the codes assigned to it, those
# that equal one of the keys (the other codes' part of its permission cannot match them)
_ADMITTING_SQL = """
SELECT g.id, g.serves,
       coalesce(array_agg(al.alias) FILTER (WHERE al.alias IS NOT NULL), '{}') AS codes
FROM gateways g
LEFT JOIN agencies a ON a.gateway_id = g.id
LEFT JOIN agency_aliases al ON al.agency_id = a.id AND al.alias = ANY($1::text[])
WHERE g.status = 'active'
GROUP BY g.id, g.serves
ORDER BY g.id
"""


async def look_up(conn: Conn, wanted: Wanted, now: datetime) -> Facts:
    row = await conn.fetchrow(_LOOKUPS_SQL, wanted.users, wanted.codes, wanted.document_ids,
                              [doc for doc, _ in wanted.deliveries],
                              [code for _, code in wanted.deliveries])
    assert row is not None
    gateways = {u: Gateway(g, u, st) for g, u, st in json.loads(row["gateways"])}
    agencies = {
        alias: Agency(aid, code, gw, st)
        for alias, aid, code, gw, st in json.loads(row["agencies"])
    }
    targets: dict[str, list[Target]] = {}
    for hub, agency, gw, code, doc in json.loads(row["targets"]):  # newest first
        targets.setdefault(doc, []).append(Target(uuid.UUID(hub), agency, gw, code, doc))
    deliveries = {
        uuid.UUID(i): DeliveryState(state, recall, code, agency)
        for i, state, recall, code, agency in json.loads(row["deliveries"])
    }
    admitted: dict[str, list[str]] = {}
    if wanted.keys_without_user:
        for r in await conn.fetch(_ADMITTING_SQL, wanted.keys_without_user):
            regex = re.compile(gateway_topic_regex(r["serves"], r["codes"]))
            for key in wanted.keys_without_user:
                if regex.match(key):
                    admitted.setdefault(key, []).append(r["id"])
    return Facts(now=now, gateways=gateways, agencies=agencies, targets=targets,
                 admitted_by=admitted, deliveries=deliveries)
