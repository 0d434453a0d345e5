"""Drive the seeded ERC-8004 workload against a devnet registered with ``devnet_deploy``."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from web3 import Web3

from indexing.devnet.contracts import devnet_deployment_get, devnet_has_code
from indexing.devnet.workload import Workload


class Command(BaseCommand):
    help = (
        "Send a seeded, realistic mix of ERC-8004 transactions to the devnet recorded for the node's chain: "
        "--ops N transactions, --events N events, or --continuous at --rate R per second until Ctrl-C "
        "(or --seconds). --truth writes the expected state (docs/devnet.md) when done."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the anvil node")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--ops", type=int, default=0, help="Transactions to send")
        parser.add_argument("--events", type=int, default=0, help="Run until at least this many events")
        parser.add_argument("--truth", default=None, help="Write the ground truth JSON to this path")
        parser.add_argument("--continuous", action="store_true", help="Keep sending until Ctrl-C")
        parser.add_argument("--rate", type=float, default=5.0, help="Transactions per second (--continuous)")
        parser.add_argument("--seconds", type=float, default=None, help="Stop --continuous after this long")
        parser.add_argument("--batch-size", type=int, default=256, help="Transactions per mined block (max)")

    def handle(self, *args: Any, **options: Any) -> None:
        rpc_url = str(options["rpc_url"])
        w3 = Web3(Web3.HTTPProvider(rpc_url))
        if not w3.is_connected():
            raise CommandError(f"no node answers at {rpc_url}")
        chain_id = w3.eth.chain_id
        deployment = devnet_deployment_get(chain_id=chain_id)
        if deployment is None or not devnet_has_code(w3=w3, deployment=deployment):
            raise CommandError(f"no live devnet deployment recorded for chain {chain_id}: run devnet_deploy first")
        workload = Workload(w3, deployment, seed=int(options["seed"]), batch_size=int(options["batch_size"]))
        started = time.monotonic()
        try:
            if options["continuous"]:
                self._run_continuous(workload, rate=float(options["rate"]), seconds=options["seconds"])
            elif options["events"]:
                workload.run_events(int(options["events"]))
            else:
                workload.run(int(options["ops"]))
        finally:
            workload.close()
        elapsed = time.monotonic() - started
        truth = workload.truth()
        self.stdout.write(
            f"seed {workload.seed}: {workload.ops} transactions, {workload.event_total} events in "
            f"{elapsed:.1f}s, blocks {truth['block_range'][0]}..{truth['block_range'][1]}, "
            f"{len(truth['agents'])} agents"
        )
        if options["truth"]:
            path = workload.write_truth(str(options["truth"]))
            self.stdout.write(f"truth written to {path}")

    def _run_continuous(self, workload: Workload, *, rate: float, seconds: float | None) -> None:
        """Ctrl-C sets a flag instead of raising, so the tick in flight is mined and the truth stays exact."""
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write("stopping after the current block...")
            stop.set()

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            workload.run_for(seconds, rate, stop=stop)
        finally:
            signal.signal(signal.SIGINT, previous)
