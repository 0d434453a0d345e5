"""agents/receivers.py: projections and file scheduling run inside the indexer's
transaction when it announces events (the real signal, real rows)."""

from __future__ import annotations

import pytest

from agents.models import Agent, FeedbackFile, FileStatus, RegistrationFile
from indexing.models import ChainEvent
from indexing.signals import events_indexed
from tests.fixtures.factories import CLIENT, make_event, make_feedback_event

pytestmark = pytest.mark.django_db

OWNER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def announce(events):
    events_indexed.send(sender=ChainEvent, chain_id=events[0].chain_id, events=events)


def test_a_registration_marks_its_file_pending_in_the_same_transaction():
    registered = make_event(
        "Registered", {"agentId": "50", "agentURI": "https://agent.example/50.json", "owner": OWNER}, agent_id=50
    )
    announce([registered])
    agent = Agent.objects.get(agent_id=50)
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert (row.status, row.uri) == (FileStatus.PENDING, "https://agent.example/50.json")
    # The same URI again (a re-announced event) schedules nothing new.
    announce([registered])
    assert RegistrationFile.objects.get(pk=agent.pk).requested_at == row.requested_at


def test_new_feedback_with_a_file_is_scheduled_and_without_one_is_not():
    make_event("Registered", {"agentId": "51", "agentURI": "", "owner": OWNER}, agent_id=51)
    with_file = make_feedback_event(agent_id=51, index=1, client=CLIENT)
    with_file.args["feedbackURI"] = "ipfs://bafy" + "a" * 40
    with_file.save()
    without = make_feedback_event(agent_id=51, index=2, client=CLIENT)
    announce([*ChainEvent.objects.filter(event_type="Registered", agent_id=51), with_file, without])
    agent = Agent.objects.get(agent_id=51)
    assert RegistrationFile.objects.get(pk=agent.pk).status == FileStatus.UNSUPPORTED  # no URI: nothing to fetch
    scheduled = {f.feedback_index: FeedbackFile.objects.filter(pk=f.pk).exists() for f in agent.feedback.all()}
    assert scheduled == {1: True, 2: False}
