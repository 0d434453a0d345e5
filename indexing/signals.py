"""How the indexer tells the floors above about new and removed events without
importing them (DESIGN.md: every import points down).

Sent **inside** the indexer's batch transaction — receivers are atomic with it:

* ``events_indexed(sender, chain_id, events)`` — newly stored, non-removed
  ``ChainEvent`` rows of one batch, in chain order.
* ``events_removed(sender, chain_id, events)`` — rows just marked ``removed`` by a
  reorg, in chain order.

Sent **after commit** (``transaction.on_commit``) — receivers may enqueue work:

* ``events_committed(sender, chain_id, event_ids, removed_event_ids)``

Who listens (the one documented place; keep it current):

==================  =====================================  ==========================
signal              receiver                               why
==================  =====================================  ==========================
events_indexed      agents.receivers.project_indexed       projections + file fetches
                                                           marked pending, same txn
events_removed      agents.receivers.project_removed       rebuild touched agents
events_committed    triggers.receivers.schedule_evaluation evaluate triggers / retract
==================  =====================================  ==========================
"""

from django.dispatch import Signal

__all__ = ("events_committed", "events_indexed", "events_removed")

events_indexed = Signal()
events_removed = Signal()
events_committed = Signal()
