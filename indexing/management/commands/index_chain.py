"""Index a chain from the command line: one poll, until caught up, or from a block.

    manage.py index_chain --chain 31337              # one bounded poll
    manage.py index_chain --chain 31337 --until-caught-up
    manage.py index_chain --chain 31337 --from 1200  # backfill from block 1200, then catch up

Re-indexing a range that is already stored changes nothing (events are unique per
chain, block hash and log index); only missing events are added.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from indexing.models import Chain
from indexing.poller import chain_poll
from indexing.services import chain_reindex_from


class Command(BaseCommand):
    help = "Poll a chain once, until caught up, or backfill from a block."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chain", type=int, required=True, help="EIP-155 chain id")
        parser.add_argument("--from", dest="from_block", type=int, help="Re-index from this block")
        parser.add_argument("--until-caught-up", action="store_true", help="Keep polling while behind")
        parser.add_argument("--max-polls", type=int, default=100_000)

    def handle(self, *args, chain: int, from_block: int | None, until_caught_up: bool, max_polls: int, **options):
        if not Chain.objects.filter(pk=chain).exists():
            raise CommandError(f"chain {chain} is not configured (see the admin or manage.py devnet_deploy)")
        if from_block is not None:
            chain_reindex_from(chain_id=chain, block=from_block)
            until_caught_up = True
        total = 0
        started = time.monotonic()
        for _ in range(max_polls):
            result = chain_poll(chain_id=chain)
            total += result.events
            self.stdout.write(
                f"{result.outcome}: blocks {result.from_block}-{result.to_block} events={result.events} "
                f"removed={result.removed} unknown={result.unknown} head={result.head}"
                + (f" error={result.error}" if result.error else "")
            )
            if result.outcome == "error":
                raise CommandError(result.error)
            if not (until_caught_up and (result.behind or result.outcome in ("busy", "retry"))):
                break
            if result.outcome == "busy":
                time.sleep(1)
        elapsed = time.monotonic() - started
        self.stdout.write(self.style.SUCCESS(f"{total} events in {elapsed:.2f}s"))
