"""Show each chain's head, indexed block, lag and last error (exit 1 if any chain errs).

manage.py chain_status
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from indexing.services import chain_status_list


class Command(BaseCommand):
    help = "Per-chain indexing status: head, indexed block, lag, last error."

    def handle(self, *args, **options) -> None:
        failing = False
        header = f"{'chain':>10}  {'name':<20} {'head':>10} {'indexed':>10} {'lag':>6} {'reorgs':>6}  last error"
        self.stdout.write(header)
        for status in chain_status_list():
            error = status.last_error.splitlines()[0][:80] if status.last_error else ""
            failing |= bool(error) and status.enabled
            self.stdout.write(
                f"{status.chain_id:>10}  {status.name[:20]:<20} {status.head_block or '-':>10} "
                f"{status.indexed_block if status.indexed_block is not None else '-':>10} "
                f"{status.lag_blocks if status.lag_blocks is not None else '-':>6} {status.reorg_count:>6}  {error}"
            )
        if failing:
            raise SystemExit(1)
