"""Trigger evaluation benchmark: events/s for one worker process, and how the
per-event cost changes from 10 to 10,000 enabled triggers.

    .venv/bin/python bench/triggers.py [--events 10000]

Setup (a fresh PostgreSQL database ``erc8004_bench_triggers``, rows built directly):
1,000 agents; NewFeedback events spread over them, values 0-100, thresholds "below 1", so
about 1 % of (event, trigger) pairs match and create deliveries (to a webhook destination that is never sent to:
no worker consumes the actions queue — this measures evaluation, not delivery). The
triggers are "agent N gets feedback below X" — each on one agent, ~10 per agent at
10,000 — plus a few on every agent.

Every configuration evaluates the same events with ``events_evaluate`` in batches of
500, the way the ``triggers`` queue's task does, after a warm-up pass (a long-lived
worker has the triggers parsed). Last line: ``events_per_s=… cost_ratio_10k_vs_10=…
cost_ratio_with_matches=…``: events/s with 10,000 triggers; the per-event cost
ratio of 10,000 to 10 triggers when neither matches more (the candidate index's
scaling) and when the 10,000 produce their ~4x more matches and deliveries.
Targets (2-core machine): at least 2,000 events/s with 10,000 triggers; ratio at
most 2.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "erc8004_bench_triggers"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")
os.environ.setdefault("REDIS_KEY_PREFIX", f"bench-triggers-{os.getpid()}:")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # one INFO line per match would be measured too

import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from actions.models import Destination  # noqa: E402
from actions.services import destination_create  # noqa: E402
from erc8004.models import Organization  # noqa: E402
from indexing.models import Chain, ChainEvent, ContractDeployment  # noqa: E402
from triggers.models import EventEvaluation, Match, Trigger, TriggerAction, TriggerKey  # noqa: E402
from triggers.services import events_evaluate, trigger_keys_rebuild  # noqa: E402

IDENTITY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REPUTATION = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
CLIENT = "0x70997970C51812dc3A010C7d01b50e20d4dc79C8"
AGENTS = 1000
BATCH = 500


def recreate_database() -> None:
    connections.close_all()
    conn = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()
    call_command("migrate", verbosity=0)


def make_events(count: int, rng: random.Random) -> list[int]:
    chain, _ = Chain.objects.get_or_create(chain_id=31337, defaults={"name": "Bench"})
    ContractDeployment.objects.get_or_create(chain=chain, address=IDENTITY, defaults={"registry": "identity"})
    ContractDeployment.objects.get_or_create(
        chain=chain, address=REPUTATION, defaults={"registry": "reputation", "identity_address": IDENTITY}
    )
    now = timezone.now()
    rows = []
    for i in range(count):
        agent = rng.randrange(AGENTS)
        value = rng.randrange(0, 101)
        rows.append(
            ChainEvent(
                chain=chain,
                block_number=1000 + i // 10,
                block_hash="0x" + f"{1000 + i // 10:064x}",
                block_timestamp=now + timedelta(milliseconds=i),
                tx_hash="0x" + f"{i:064x}",
                tx_index=0,
                log_index=i,
                address=REPUTATION,
                registry="reputation",
                event_type="NewFeedback",
                agent_id=Decimal(agent),
                args={
                    "agentId": str(agent),
                    "clientAddress": CLIENT,
                    "feedbackIndex": i + 1,
                    "value": str(value),
                    "valueDecimals": 0,
                    "valueNormalized": str(value),
                    "tag1": "starred",
                    "tag2": "",
                    "endpoint": "",
                    "feedbackURI": "",
                    "feedbackHash": "0x" + "00" * 32,
                    "indexedTag1": "0x" + "00" * 32,
                },
            )
        )
    ChainEvent.objects.bulk_create(rows, batch_size=2000)
    return list(ChainEvent.objects.order_by("pk").values_list("pk", flat=True))


def make_triggers(count: int, rng: random.Random, *, threshold: int = 1) -> None:
    Trigger.objects.all().delete()
    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    destination = Destination.objects.filter(organization=org).first()
    if destination is None:
        destination = destination_create(
            organization=org, name="sink", channel="webhook", config={"url": "https://example.invalid/hook"}
        )
    triggers = []
    for i in range(count):
        if i < 3:
            conditions = {"type": "value_threshold", "op": "lt", "value": threshold}  # any agent
        else:
            conditions = {
                "all": [
                    {"type": "agent_id", "values": [rng.randrange(AGENTS)]},
                    {"type": "value_threshold", "op": "lt", "value": threshold},
                ]
            }
        triggers.append(Trigger(organization=org, name=f"t{i}", event_types=["NewFeedback"], conditions=conditions))
    Trigger.objects.bulk_create(triggers, batch_size=2000)
    TriggerAction.objects.bulk_create(
        [TriggerAction(trigger=t, destination=destination) for t in Trigger.objects.all()], batch_size=2000
    )
    for trigger in Trigger.objects.all():
        trigger_keys_rebuild(trigger=trigger)


def run(event_ids: list[int]) -> tuple[float, int]:
    EventEvaluation.objects.all().delete()
    Match.objects.all().delete()
    # A trigger sees events indexed after it was created: these "arrive" now.
    ChainEvent.objects.update(indexed_at=timezone.now())
    started = time.perf_counter()
    matches = 0
    for start in range(0, len(event_ids), BATCH):
        matches += events_evaluate(event_ids=event_ids[start : start + BATCH]).matches
    return time.perf_counter() - started, matches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(8004)
    recreate_database()
    event_ids = make_events(args.events, rng)
    results = {}
    # (label, triggers, threshold): values are 0-100, so "below 1" matches ~1 % of the
    # (event, trigger) pairs and "below 0" never — the last isolates evaluation cost
    # from the cost of the extra deliveries that more triggers produce.
    for label, size, threshold in (("10", 10, 1), ("10k", 10_000, 1), ("10k-nomatch", 10_000, 0)):
        make_triggers(size, random.Random(size), threshold=threshold)
        run(event_ids)  # warm the process caches (parsed triggers), as a long-lived worker has them
        seconds, matches = run(event_ids)
        results[label] = seconds
        keys = TriggerKey.objects.count()
        print(
            f"{label:>12}: {size} triggers ({keys} keys): {len(event_ids)} events in {seconds:.2f}s = "
            f"{len(event_ids) / seconds:,.0f} events/s, {seconds / len(event_ids) * 1e6:.0f} µs/event, "
            f"{matches} matches"
        )
    with_matches = results["10k"] / results["10"]
    evaluation_only = results["10k-nomatch"] / results["10"]
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(
        f"cost ratio 10k/10: {evaluation_only:.2f} for evaluation (10k triggers, none matching), "
        f"{with_matches:.2f} including the extra deliveries the 10k triggers create"
    )
    print(
        f"events_per_s={len(event_ids) / results['10k']:.0f} cost_ratio_10k_vs_10={evaluation_only:.2f} "
        f"cost_ratio_with_matches={with_matches:.2f}"
    )


if __name__ == "__main__":
    main()
