"""Poll each chain the moment its node announces a new block (indexing/heads.py).

    manage.py head_listener [--reload 30]

One long-running process per deployment (like beat; a second one only doubles the
nudges, which the poller's lease absorbs). It follows every enabled chain whose enabled
RPC endpoint has a ``ws_url`` and re-reads the endpoints every ``--reload`` seconds, so
chains added or changed in the admin are picked up without a restart. Optional: without
it beat's timer alone drives polling (docs/runbook.md). SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from indexing.heads import HeadFollower


class Command(BaseCommand):
    help = "Follow newHeads over websockets and enqueue a chain's poll on each new block."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reload", type=float, default=30.0, help="Seconds between re-reads of the endpoints")

    def handle(self, *args, **opts) -> None:
        stop = threading.Event()

        def on_signal(signum, frame) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        follower = HeadFollower()
        followed: dict[int, str] | None = None
        try:
            while not stop.is_set():
                try:
                    current = follower.sync()
                except Exception as exc:  # the database may be restarting: keep what runs, retry
                    self.stderr.write(f"head_listener: could not read the endpoints: {exc}")
                    current = followed
                if current != followed:
                    chains = ", ".join(f"{c} ({u})" for c, u in sorted((current or {}).items())) or "none"
                    self.stdout.write(f"head_listener: following {chains}")
                    followed = current
                stop.wait(opts["reload"])
        finally:
            follower.stop()
            self.stdout.write("head_listener: stopped")
