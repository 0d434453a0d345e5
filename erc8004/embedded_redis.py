"""The embedded default's Redis: a Redis-protocol server in pure Python (fakeredis).

``make run`` starts it when no ``REDIS_URL`` is given, so the whole stack — Celery
broker, Flower, the shared Telegram rate limits, throttling — runs the same code
path as production without a Redis server installed. It keeps nothing on disk,
which is fine by design: Redis only ever holds messages that PostgreSQL (here
SQLite) can regenerate (docs/architecture.md).

    python -m erc8004.embedded_redis --port 6390
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    from fakeredis import TcpFakeServer

    server = TcpFakeServer((args.host, args.port), server_type="redis")
    # shutdown() waits for serve_forever() to return, so it must run on another thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    sys.stdout.write(f"embedded redis listening on {args.host}:{args.port}\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
