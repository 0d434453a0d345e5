"""agents/receivers.py: after the indexer commits, agents whose URI changed get their
file fetched by a real Celery worker over the real Redis broker; a broker failure
leaves pending rows for the sweeper instead of raising into the indexer."""

from __future__ import annotations

import json
import time

import pytest

from agents.models import Agent, FileStatus, RegistrationFile
from indexing.models import ChainEvent
from indexing.signals import events_committed

from .factories import CHAIN_ID, IDENTITY, agent_make, chain_make, event_make


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_registration_event_leads_to_a_fetched_file(celery_worker, file_server):
    chain = chain_make()
    backlink = {"agentId": 60, "agentRegistry": f"eip155:{CHAIN_ID}:{IDENTITY}"}
    body = {"name": "worker agent", "registrations": [backlink]}
    uri = file_server.route("/60.json", json.dumps(body), fail_first=1)  # one 503 first: retried by countdown
    agent = agent_make(chain, 60, agent_uri=uri)
    event = event_make(chain, "Registered", agent_id=60, args={"agentId": "60", "agentURI": uri})
    with pytest.MonkeyPatch.context() as mp:
        from django.conf import settings

        mp.setattr(settings, "FILE_FETCH_RETRY_DELAYS", [1])
        events_committed.send(sender=ChainEvent, chain_id=CHAIN_ID, event_ids=[event.pk], removed_event_ids=[])
        assert wait_for(lambda: RegistrationFile.objects.filter(pk=agent.pk, status=FileStatus.OK).exists())
    agent = Agent.objects.get(pk=agent.pk)
    assert agent.name == "worker agent"
    assert agent.registrations_backlink is True
    assert file_server.count("/60.json") == 2


@pytest.mark.django_db
def test_a_broker_failure_does_not_raise_and_leaves_pending_rows(monkeypatch, file_server):
    from agents import tasks

    chain = chain_make()
    agent = agent_make(chain, 61, agent_uri=file_server.url("/61.json"))
    event = event_make(chain, "URIUpdated", agent_id=61, args={"agentId": "61", "newURI": agent.agent_uri})

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.fetch_registration_file, "delay", broker_down)
    events_committed.send(sender=ChainEvent, chain_id=CHAIN_ID, event_ids=[event.pk], removed_event_ids=[])
    assert RegistrationFile.objects.get(pk=agent.pk).status == FileStatus.PENDING
