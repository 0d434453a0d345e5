"""``manage.py metrics_exporter``: serve the counters of *this host's* processes on
their own port — for hosts that run workers but no web process (docs/deploy.md,
multi-host). Prometheus scrapes every such host plus one web ``/metrics``.

It reads the same multiprocess files as the web's ``/metrics`` (one directory, or
every container's under ``METRICS_MULTIPROC_ROOT``) and adds no database facts:
those are the same for every host and come from the web's page, once.
"""

from __future__ import annotations

import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from erc8004.metrics import _MergedDirectoriesCollector


class Command(BaseCommand):
    help = "Serve this host's worker metrics (prometheus_client multiprocess files) over HTTP."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=9808)
        parser.add_argument("--address", default="0.0.0.0")  # noqa: S104 - an exporter listens for Prometheus

    def handle(self, *args, **opts) -> None:
        registry = CollectorRegistry(auto_describe=False)
        root = os.environ.get("METRICS_MULTIPROC_ROOT")
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if root:
            registry.register(_MergedDirectoriesCollector(root))
        elif directory:
            multiprocess.MultiProcessCollector(registry, path=directory)
        else:
            raise CommandError("set METRICS_MULTIPROC_ROOT or PROMETHEUS_MULTIPROC_DIR: there is nothing to export")
        server, thread = start_http_server(opts["port"], addr=opts["address"], registry=registry)
        self.stdout.write(f"exporting {root or directory} on http://{opts['address']}:{opts['port']}/metrics")
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        server.shutdown()
        thread.join(timeout=5)
