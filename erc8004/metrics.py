"""Prometheus metrics shared by every process (web, workers, beat).

Defined once here so each name has one meaning everywhere (docs/runbook.md maps the
seed system's metric names onto these). Counters and histograms work in
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``); values that
are facts in the database (chain lag, queue depth, breaker state) are read at scrape
time instead of being pushed as gauges.
"""

from prometheus_client import Counter, Histogram

__all__ = (
    "EVENTS_INGESTED",
    "POLLS",
    "REORGS",
    "REORG_DEPTH",
    "RPC_CALLS",
    "RPC_ERRORS",
    "RPC_FAILOVERS",
    "TRIGGERS_EVALUATED",
    "TRIGGER_MATCHES",
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
TRIGGERS_EVALUATED = Counter("erc8004_trigger_evaluations_total", "Trigger conditions evaluated against an event")
TRIGGER_MATCHES = Counter("erc8004_trigger_matches_total", "Trigger matches by outcome", ["outcome"])
