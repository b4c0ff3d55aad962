"""The names on the wire between gateways and the hub: exchanges, queues, message types,
content types and headers (with their AMQP field types). Hub and SDK both import them
from here; ``docs/asyncapi.yaml`` describes the same names and a test keeps it in step.
No I/O.

What a gateway uses:

=========================  ========  ==================================================
name                       kind      use
=========================  ========  ==================================================
lt.submit                  exchange  publish packages; routing key = sender agency code
amq.rabbitmq.reply-to      queue     optional: the receipt of a send straight back
lt.gw.<gateway>.inbox      queue     consume documents and status packages (copies)
lt.gw.<gateway>.receipts   queue     consume receipts, delivery events, audit anchors
=========================  ========  ==================================================

The other names are the hub's own (routers, dead letters, parking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ANCHOR_HEADERS",
    "CHUNKS",
    "CHUNK_KEY",
    "COPY_HEADERS",
    "DEAD",
    "DELETE_AGENCY_KEY",
    "DELIVER",
    "DIRECTORY",
    "DIRECTORY_KEY",
    "DIRECT_REPLY",
    "GATEWAY_QUEUE_PREFIX",
    "HUB_APP_ID",
    "INTAKE",
    "INTAKE_OTHER",
    "PACKAGE_CONTENT_TYPE",
    "PACKAGE_TYPES",
    "PARKING",
    "QUARANTINE",
    "RECEIPTS",
    "RECEIPT_HEADERS",
    "RECORD_GATEWAY_CHANGE_KEY",
    "REGISTER_AGENCY_KEY",
    "REPLAY",
    "REPLAY_RECEIPTS_KEY",
    "REQUESTS",
    "ROUTER_IN",
    "SUBMIT",
    "SUBMIT_HEADERS",
    "TRANSFER",
    "TRANSFER_CONTENT_TYPE",
    "TRANSFER_KEY",
    "TRANSFER_REF_TYPE",
    "UNROUTABLE",
    "AmqpType",
    "Header",
    "inbox_queue",
    "intake_queue",
    "is_intake_queue",
    "receipt_message_type",
    "receipts_queue",
]

# exchanges and queues ------------------------------------------------------------------
SUBMIT: Final = "lt.submit"  # topic exchange; gateways publish here
# the routers' queue for what no gateway's intake queue takes (lt.intake's alternate)
ROUTER_IN: Final = "lt.router.in"
INTAKE: Final = "lt.intake"  # topic exchange bound from lt.submit ('#'): gateways' intake
INTAKE_OTHER: Final = "lt.intake.other"  # fanout: lt.intake's alternate, to lt.router.in
DELIVER: Final = "lt.deliver"  # direct exchange: copies, key = recipient gateway id
RECEIPTS: Final = "lt.receipts"  # direct exchange: receipts and events, key = gateway id
DEAD: Final = "lt.dead"  # fanout: dead letters of lt.router.in and of every inbox
PARKING: Final = "lt.parking"  # quorum queue: poison messages for operators
UNROUTABLE: Final = "lt.unroutable"  # fanout exchange and queue: what nothing wanted
QUARANTINE: Final = "lt.quarantine"  # parked messages the routers could not record
REPLAY: Final = "lt.replay"  # queue: a gateway asks for the receipts it missed
REPLAY_RECEIPTS_KEY: Final = "receipts"  # the replay request's kind
DIRECTORY: Final = "lt.directory"  # queue: the routers answer directory feed requests
DIRECTORY_KEY: Final = "directory"  # on the lt.replay exchange, which gateways may write to
# queue: the routers answer gateways' requests that change the hub (router.requests)
REQUESTS: Final = "lt.requests"
REGISTER_AGENCY_KEY: Final = "directory.register_agency"  # a gateway registers an agency
DELETE_AGENCY_KEY: Final = "directory.delete_agency"  # a gateway removes one of its agencies
RECORD_GATEWAY_CHANGE_KEY: Final = "audit.record_gateway_change"  # gateway-side config change
# large packages (router.transfer, adapters.transfer): requests and chunks on lt.replay
TRANSFER: Final = "lt.transfer"  # queue: open, status and fetch requests (key ``transfer``)
TRANSFER_KEY: Final = "transfer"
CHUNKS: Final = "lt.transfer.chunks"  # queue: the chunks of uploads (key ``chunk``)
CHUNK_KEY: Final = "chunk"
#: the JSON body of a claim and of a large package's copy: {"type": TRANSFER_REF_TYPE, ...}
TRANSFER_REF_TYPE: Final = "lienthong.transfer"
TRANSFER_CONTENT_TYPE: Final = "application/vnd.lienthong.transfer+json"
DIRECT_REPLY: Final = "amq.rabbitmq.reply-to"  # RabbitMQ's direct reply-to pseudo-queue
GATEWAY_QUEUE_PREFIX: Final = "lt.gw."


def inbox_queue(gateway_id: str) -> str:
    """A gateway's inbox: the copies of documents and status packages sent to it."""
    return f"{GATEWAY_QUEUE_PREFIX}{gateway_id}.inbox"


def intake_queue(gateway_id: str) -> str:
    """A gateway's intake queue: what it submits, waiting for the routers (bound on
    ``lt.intake`` with the keys its topic permission admits)."""
    return f"{ROUTER_IN}.{gateway_id}"


def is_intake_queue(name: str) -> bool:
    """``lt.router.in`` or a gateway's intake queue."""
    return name == ROUTER_IN or name.startswith(f"{ROUTER_IN}.")


def receipts_queue(gateway_id: str) -> str:
    """A gateway's receipts queue: receipts, delivery events and audit anchors."""
    return f"{GATEWAY_QUEUE_PREFIX}{gateway_id}.receipts"


# message properties ----------------------------------------------------------------------
PACKAGE_CONTENT_TYPE: Final = "application/xml"
HUB_APP_ID: Final = "lienthong"  # app_id of everything the hub publishes
#: AMQP ``type`` of a package (submitted, and of its copies): edXML document or status
PACKAGE_TYPES: Final = ("edoc", "status")


def receipt_message_type(receipt_type: str) -> str:
    """AMQP ``type`` of a receipt message: ``receipt.accepted``, ``receipt.delivery``…"""
    return f"receipt.{receipt_type}"


# headers ---------------------------------------------------------------------------------
#: AMQP 0-9-1 field-table types as RabbitMQ clients write them: ``longstr`` (S),
#: ``array`` (A, here of longstr), ``double`` (d), ``integer`` (a signed integer: clients
#: pick b/s/I/l by size; read any of them)
AmqpType = Literal["longstr", "array", "double", "integer"]


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    amqp_type: AmqpType
    required: bool
    description: str


# names, as used by the code that writes or reads them
SENT_AT: Final = "lt-sent-at"
HUB_ID: Final = "lt-hub-id"
KIND: Final = "lt-kind"
SENDER: Final = "lt-sender"
RECIPIENTS: Final = "lt-recipients"
DELIVERY_IDS: Final = "lt-delivery-ids"
DOCUMENT_ID: Final = "lt-document-id"
STATUS_CODE: Final = "lt-status-code"
RECEIPT_TYPE: Final = "lt-receipt-type"
ANCHOR_NUMBER: Final = "lt-anchor-number"
ANCHOR_SEQ: Final = "lt-anchor-seq"
UPLOAD_ID: Final = "lt-upload-id"
CHUNK_SEQ: Final = "lt-chunk-seq"
CHUNK_SHA256: Final = "lt-chunk-sha256"
# the hub's own, on parked messages (never on what a gateway receives)
PARK_REASON: Final = "lt-reason"
PARK_ERROR: Final = "lt-error"
ORIGINAL_USER: Final = "lt-original-user"

#: headers a gateway may set on a submitted package
SUBMIT_HEADERS: Final = (
    Header(SENT_AT, "double", False,
           "When the gateway sent it, seconds since the Unix epoch (for latency metrics)"),
)

#: headers of a copy in a gateway's inbox
COPY_HEADERS: Final = (
    Header(HUB_ID, "longstr", True, "The hub's id of the package (UUID)"),
    Header(KIND, "longstr", True, "edoc or status (the same as the AMQP type)"),
    Header(SENDER, "longstr", True, "The sender agency code (From/OrganId), canonical"),
    Header(RECIPIENTS, "array", True,
           "Canonical agency codes of the recipients this copy is for (this gateway's)"),
    Header(DELIVERY_IDS, "array", True,
           "The hub's delivery ids (UUIDs) this copy stands for, one per recipient"),
    Header(DOCUMENT_ID, "longstr", False,
           "The DocumentId (edoc: its own; status: the document it answers); absent if none"),
    Header(STATUS_CODE, "longstr", False, "Status packages only: the status code (01…16)"),
)

#: headers of a receipt or delivery event in a gateway's receipts queue
RECEIPT_HEADERS: Final = (
    Header(HUB_ID, "longstr", True, "The package's hub id; empty when it was refused unread"),
    Header(RECEIPT_TYPE, "longstr", True, "accepted, duplicate, rejected or delivery"),
)

#: headers of a signed audit anchor in a gateway's receipts queue
ANCHOR_HEADERS: Final = (
    Header(ANCHOR_NUMBER, "integer", True, "The anchor's number, increasing"),
    Header(ANCHOR_SEQ, "integer", True, "The audit log sequence number the anchor covers"),
)
