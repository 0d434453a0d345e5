"""Prometheus metrics shared by every process (web, workers, beat).

Defined once here so each name has one meaning everywhere (docs/runbook.md maps the
seed system's metric names onto these). Counters and histograms work in
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``); values that
are facts in the database (chain lag, queue depth, breaker state) are read at scrape
time instead of being pushed as gauges.
"""

from prometheus_client import Counter, Histogram

__all__ = (
    "BREAKER_TRANSITIONS",
    "DELIVERIES",
    "DELIVERY_ATTEMPTS",
    "DELIVERY_BACKPRESSURE",
    "DELIVERY_DEAD_LETTERS",
    "DELIVERY_LATENCY",
    "DELIVERY_RATE_LIMITED",
    "EVENTS_INGESTED",
    "POLLS",
    "REORGS",
    "REORG_DEPTH",
    "RPC_CALLS",
    "RPC_ERRORS",
    "RPC_FAILOVERS",
    "UNKNOWN_LOGS",
)

RPC_CALLS = Counter("erc8004_rpc_calls_total", "JSON-RPC requests sent", ["chain", "method"])
RPC_ERRORS = Counter("erc8004_rpc_errors_total", "JSON-RPC failures by kind", ["chain", "kind"])
RPC_FAILOVERS = Counter("erc8004_rpc_failovers_total", "Rotations to the next RPC endpoint", ["chain"])
POLLS = Counter("erc8004_polls_total", "Poll runs by outcome", ["chain", "outcome"])
EVENTS_INGESTED = Counter("erc8004_events_ingested_total", "Registry events stored", ["chain", "event_type"])
UNKNOWN_LOGS = Counter("erc8004_unknown_logs_total", "Registry logs that could not be decoded", ["chain"])
REORGS = Counter("erc8004_reorgs_total", "Chain reorganisations detected", ["chain"])
REORG_DEPTH = Histogram(
    "erc8004_reorg_depth_blocks", "Blocks rewound per reorg", ["chain"], buckets=(1, 2, 3, 5, 8, 13, 21, 64, 128)
)

# Actions (actions/services.py). "channel" is telegram | webhook | mcp.
DELIVERIES = Counter(
    "erc8004_deliveries_total",
    "Deliveries reaching a status: created, succeeded, retrying, dead, cancelled, replayed",
    ["channel", "status"],
)
DELIVERY_ATTEMPTS = Counter(
    "erc8004_delivery_attempts_total", "Send attempts by outcome (success | failure)", ["channel", "outcome"]
)
DELIVERY_DEAD_LETTERS = Counter(
    "erc8004_delivery_dead_letters_total", "Deliveries dead-lettered, by reason", ["channel", "reason"]
)
DELIVERY_LATENCY = Histogram(
    "erc8004_delivery_latency_seconds",
    "Block timestamp of the event to the receiver's success response (first success only)",
    ["channel"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 900, 3600, 21600),
)
DELIVERY_RATE_LIMITED = Counter(
    "erc8004_delivery_rate_limited_total",
    "Sends deferred by a rate limit before sending (not attempts): scope = chat | bot | destination | receiver",
    ["channel", "scope"],
)
DELIVERY_BACKPRESSURE = Counter(
    "erc8004_delivery_backpressure_total",
    "Dispatcher ticks that left due rows in the database because the actions queue was full",
)
BREAKER_TRANSITIONS = Counter(
    "erc8004_breaker_transitions_total", "Destination circuit-breaker transitions", ["channel", "to_state"]
)
