"""Run an anvil devnet in the foreground until stopped (``make run`` uses it).

    manage.py devnet_anvil --port 8545 --block-time 1

The chain keeps nothing on disk: a new run is a new chain, and ``devnet_deploy``
registers the fresh deployment (resetting the indexer's cursor when the chain's
contracts changed).
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand

from indexing.devnet.anvil import AnvilProcess


class Command(BaseCommand):
    help = "Run a local anvil devnet in the foreground (Ctrl-C or SIGTERM stops it)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8545)
        parser.add_argument("--block-time", type=float, default=1.0, help="Seconds per block (0 = automine)")
        parser.add_argument("--chain-id", type=int, default=31337)
        parser.add_argument("--accounts", type=int, default=20)

    def handle(self, *args, port: int, block_time: float, chain_id: int, accounts: int, **options) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        anvil = AnvilProcess(
            port=port,
            chain_id=chain_id,
            block_time=block_time or None,
            accounts=accounts,
            gas_limit=300_000_000,  # fewer, bigger blocks: anvil's cost is per block (docs/devnet.md)
        )
        with anvil:
            self.stdout.write(f"anvil listening on {anvil.rpc_url} (chain id {chain_id}, pid {anvil.pid})")
            self.stdout.flush()
            while not stopping and anvil.is_running():
                time.sleep(0.5)
        self.stdout.write("anvil stopped")
