"""The Celery broker transport: kombu's Redis transport with one repair, so a worker
survives its broker going away.

Celery 5.7, on a lost broker connection, first *collects* the broken connection
(which detaches the transport from its connection) and then closes it; closing the
consumer's channel restores the messages the worker holds unacknowledged — and
restoring needs the connection the collect just dropped. With any message held
(a task with a countdown, e.g. ``agents.fetch_*`` retries, is held for its whole
countdown) that raised ``AttributeError`` out of the consumer: "Unrecoverable
error", the worker process exited. tests/erc8004/test_broker.py reproduces it;
tests/faults/test_redis_outage.py is the scenario that found it.

The same goes for a task that was running when the connection broke and finishes
after it (settings: running tasks are not killed on a connection loss): its
acknowledgement would go to the closed connection — another ``AttributeError`` in the
event loop, another dead worker.

Here, when the connection is already gone, the held messages are left where the
Redis transport keeps them (its "unacked" hash): a worker restores them once
``CELERY_VISIBILITY_TIMEOUT`` has passed — and if Redis came back empty they are
gone, which the sweepers already cover (every message is rebuilt from PostgreSQL
rows: docs/architecture.md, "Redis holds nothing that cannot be rebuilt").
``install()`` (erc8004/celery.py, before the app exists) makes ``redis://`` and
``rediss://`` URLs resolve to it. Through kombu's alias table rather than the
``broker_transport`` setting on purpose: kombu keys its ``rediss`` TLS defaults and the
URL it logs on the scheme name, and both must stay what they are.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis

__all__ = ("Transport", "install")

logger = logging.getLogger("erc8004.broker")


class QoS(redis.QoS):
    def _connection_gone(self) -> bool:
        transport = getattr(self.channel, "connection", None)
        return transport is None or getattr(transport, "client", None) is None

    def restore_unacked(self, client: Any = None) -> None:
        if client is None and self._connection_gone():
            if self._delivered:
                logger.warning(
                    "broker connection lost holding %s unacknowledged message(s): left to the visibility timeout",
                    len(self._delivered),
                )
            self._delivered.clear()
            return
        super().restore_unacked(client)

    def ack(self, delivery_tag: Any) -> None:
        """A task that was running when the connection broke finishes later; its message
        belongs to the old connection, now closed. Acknowledging it there raised
        ``AttributeError`` in the worker's event loop (the worker exited). The message
        stays in the unacked hash and, if Redis kept it, comes back after the
        visibility timeout and loses its claim (every task is idempotent)."""
        if self._connection_gone():
            logger.info("message %s finished after its broker connection was replaced: not acknowledged", delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._connection_gone():
            logger.info("message %s finished after its broker connection was replaced: not rejected", delivery_tag)
            return
        super().reject(delivery_tag, requeue=requeue)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel


def install() -> None:
    """Resolve the ``redis`` and ``rediss`` URL schemes to this transport."""
    from kombu import transport as kombu_transport

    for alias in ("redis", "rediss"):
        kombu_transport.TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"
        kombu_transport._transport_cache.pop(alias, None)
