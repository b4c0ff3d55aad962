"""Prometheus metrics of the axis: module-level ``prometheus_client`` objects.

Router processes count what they route (:func:`record_batch`, called once per batch) and can
serve them with :func:`serve_metrics` (``LIENTHONG_METRICS_PORT``, off by default; under
``lienthong router -n N`` worker i serves port + i, see :mod:`router.cli.run`). The
ops process (``lienthong ops``) serves the same registry at ``/metrics`` and refreshes the
gauges that describe the ledger and the broker (:mod:`router.ops.gauges`).

Label values are bounded: kinds, outcomes, states and reason names are closed sets, and the
only open label is the gateway id (~1,000), never an agency or a document.

==========================================  =========  =====================================
metric                                      type       labels / meaning
==========================================  =========  =====================================
lienthong_packages_total                    counter    kind (edoc|status|unknown), outcome
                                                       (accepted|duplicate|rejected|parked)
lienthong_rejections_total                  counter    reason (``Reason.name``)
lienthong_routing_seconds                   histogram  submit -> copies queued, per package
lienthong_batch_size                        histogram  packages per router batch
lienthong_copies_total                      counter    outcome (queued|undeliverable)
lienthong_deliveries                        gauge      state: deliveries in the ledger
lienthong_gateway_queue_depth               gauge      gateway, queue (inbox|receipts): msgs
lienthong_gateway_consumers                 gauge      gateway: consumers on the inbox
lienthong_gateway_oldest_seconds            gauge      gateway: age of the oldest package
                                                       still waiting in the inbox (0 if none)
lienthong_not_arrived                       gauge      deliveries flagged "not arrived"
lienthong_overdue                           gauge      deliveries flagged "overdue"
lienthong_parked                            gauge      messages waiting in parking
lienthong_redeliveries_total                counter    outcome (queued|undeliverable|failed)
lienthong_router_outage_waits_total         counter    cause (refused|other): a batch held
                                                       and tried again while the broker
                                                       refused or PostgreSQL/RabbitMQ was away
lienthong_router_channel_renewals_total     counter    publishing channels replaced after
                                                       the broker kept refusing on one
lienthong_certificate_expiry_timestamp_seconds  gauge  gateway: when its nearest certificate
                                                       expires (unix time)
lienthong_gauges_refreshed_timestamp_seconds  gauge    when the ops process last refreshed
                                                       the ledger/broker gauges (unix time)
lienthong_build_info                        gauge      version, python: always 1
==========================================  =========  =====================================
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "BATCH_PHASE_SECONDS",
    "BATCH_SIZE",
    "BATCH_WRITES",
    "BUILD_INFO",
    "CERT_EXPIRY",
    "COPIES",
    "DELIVERIES",
    "GATEWAY_CONSUMERS",
    "GATEWAY_OLDEST",
    "GATEWAY_QUEUE_DEPTH",
    "GAUGES_REFRESHED",
    "INTAKE_HELD_BYTES",
    "INTAKE_PAUSES",
    "NOT_ARRIVED",
    "OUTAGE_WAITS",
    "OVERDUE",
    "PACKAGES",
    "PACKAGE_OUTCOMES",
    "PARKED",
    "PUBLISH_CHANNEL_RENEWALS",
    "REDELIVERIES",
    "REJECTIONS",
    "ROUTE_STEP_SECONDS",
    "ROUTING_SECONDS",
    "record_batch",
    "serve_metrics",
]

PACKAGE_OUTCOMES = ("accepted", "duplicate", "rejected", "parked")
PACKAGE_KINDS = ("edoc", "status", "unknown")
COPY_OUTCOMES = ("queued", "undeliverable")

PACKAGES = Counter(
    "lienthong_packages_total",
    "Packages handled by the routers, by kind and outcome",
    ["kind", "outcome"],
)
REJECTIONS = Counter(
    "lienthong_rejections_total",
    "Packages and statuses refused by the routers, by reason code name",
    ["reason"],
)
ROUTING_SECONDS = Histogram(
    "lienthong_routing_seconds",
    "Time from a package's submission to its copies being queued",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "lienthong_batch_size",
    "Packages per router batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
_PHASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_PHASE_SECONDS = Histogram(
    "lienthong_batch_phase_seconds",
    "Time a router batch spends in each phase: wait (its first package, from delivery to "
    "the batch's start), turn (waiting for the batch before it to be recorded), route "
    "(parse, validate, one ledger transaction), publish (copies out, every confirm back), "
    "finish (the copies' fate recorded, receipts to senders)",
    ["phase"],
    buckets=_PHASE_BUCKETS,
)
ROUTE_STEP_SECONDS = Histogram(
    "lienthong_route_step_seconds",
    "The route phase of a batch, by step: parse (bytes to packages), lookup (the facts the "
    "decisions need, one round trip), record (the batch's ledger transaction)",
    ["step"],
    buckets=_PHASE_BUCKETS,
)
BATCH_WRITES = Counter(
    "lienthong_batch_writes_total",
    "Batches written to the ledger, by how: one_statement (nothing had changed since the "
    "look-up), transaction (under locks: a duplicate, a business package closing documents, "
    "a refused status, or the ledger changed meanwhile)",
    ["how"],
)
COPIES = Counter(
    "lienthong_copies_total",
    "Copies published to recipient gateways' inboxes, by outcome",
    ["outcome"],
)
DELIVERIES = Gauge(
    "lienthong_deliveries",
    "Deliveries in the ledger by state (refreshed by the ops process)",
    ["state"],
)
GATEWAY_QUEUE_DEPTH = Gauge(
    "lienthong_gateway_queue_depth",
    "Messages in a gateway's queue (ready + unacknowledged): inbox, receipts, or intake "
    "(what it submitted, waiting for the routers)",
    ["gateway", "queue"],
)
GATEWAY_CONSUMERS = Gauge(
    "lienthong_gateway_consumers",
    "Consumers connected to a gateway's inbox",
    ["gateway"],
)
GATEWAY_OLDEST = Gauge(
    "lienthong_gateway_oldest_seconds",
    "Age of the oldest package still waiting in a gateway's inbox (0 when empty)",
    ["gateway"],
)
NOT_ARRIVED = Gauge(
    "lienthong_not_arrived",
    "Deliveries queued past the arrival deadline without a 01 status",
)
OVERDUE = Gauge(
    "lienthong_overdue",
    "Deliveries past the document's due date without a 06 status",
)
PARKED = Gauge(
    "lienthong_parked",
    "Messages in parking waiting for an operator",
)
REDELIVERIES = Counter(
    "lienthong_redeliveries_total",
    "Deliveries re-sent by operators, by outcome",
    ["outcome"],
)
OUTAGE_WAITS = Counter(
    "lienthong_router_outage_waits_total",
    "Batches held and tried again while the broker refused or a service was away",
    ["cause"],
)
INTAKE_PAUSES = Counter(
    "lienthong_router_intake_pauses_total",
    "Times a router stopped taking from its intake queues: it held more unacknowledged "
    "bytes than LIENTHONG_INFLIGHT_MAX_BYTES",
)
INTAKE_HELD_BYTES = Gauge(
    "lienthong_router_intake_held_bytes",
    "Bytes of packages a router holds unacknowledged (waiting for a batch or in one)",
)
PUBLISH_CHANNEL_RENEWALS = Counter(
    "lienthong_router_channel_renewals_total",
    "Publishing channels replaced after the broker kept refusing on one",
)
CERT_EXPIRY = Gauge(
    "lienthong_certificate_expiry_timestamp_seconds",
    "Unix time when a gateway's nearest certificate expires (in the past: expired)",
    ["gateway"],
)
GAUGES_REFRESHED = Gauge(
    "lienthong_gauges_refreshed_timestamp_seconds",
    "Unix time of the ops process's last successful gauge refresh",
)
BUILD_INFO = Gauge(
    "lienthong_build_info",
    "The lienthong version and Python running this process (always 1)",
    ["version", "python"],
)


def _build() -> tuple[str, str]:
    """(lienthong version, Python version) for ``lienthong_build_info``."""
    import platform
    from importlib import metadata

    try:
        version = metadata.version("lienthong")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return version, platform.python_version()


BUILD_INFO.labels(*_build()).set(1)

# Pre-create the bounded label sets so rates exist (at 0) before the first event.
for _kind in PACKAGE_KINDS:
    for _outcome in PACKAGE_OUTCOMES:
        PACKAGES.labels(_kind, _outcome)
for _outcome in COPY_OUTCOMES:
    COPIES.labels(_outcome)


def record_batch(
    plan_outcomes: list[str],
    kinds: list[str],
    routing_seconds: list[float],
    copies_queued: int,
    copies_undeliverable: int,
    rejection_reasons: list[str],
) -> None:
    """Count one router batch. ``plan_outcomes`` and ``kinds`` are parallel, one per package
    (a package whose kind could not be parsed is ``unknown``); ``routing_seconds`` has one
    entry per package that was queued; ``rejection_reasons`` one ``Reason.name`` per refusal.
    """
    if len(plan_outcomes) != len(kinds):
        raise ValueError("plan_outcomes and kinds must be parallel lists")
    BATCH_SIZE.observe(len(plan_outcomes))
    for outcome, kind in zip(plan_outcomes, kinds, strict=True):
        PACKAGES.labels(kind if kind in PACKAGE_KINDS else "unknown", outcome).inc()
    for seconds in routing_seconds:
        ROUTING_SECONDS.observe(max(seconds, 0.0))
    if copies_queued:
        COPIES.labels("queued").inc(copies_queued)
    if copies_undeliverable:
        COPIES.labels("undeliverable").inc(copies_undeliverable)
    for reason in rejection_reasons:
        REJECTIONS.labels(reason).inc()


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped remotely
    """Serve ``/metrics`` from a background thread (router processes)."""
    start_http_server(port, addr=addr)


