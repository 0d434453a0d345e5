"""agents/admin.py: agents, feedback and validations are browsable and searchable,
read-only, show the file status and error, and offer "re-fetch"."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from agents.models import FileStatus, RegistrationFile
from agents.services import registration_files_schedule

from .factories import address, agent_make, chain_make, feedback_make, validation_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def data():
    chain = chain_make()
    agent = agent_make(chain, 0, name="Searchable Agent", agent_uri="ar://nope")
    registration_files_schedule(agent_pks=[agent.pk])
    RegistrationFile.objects.filter(pk=agent.pk).update(status=FileStatus.ERROR, error="every IPFS gateway failed")
    feedback = feedback_make(agent, address(1), 1, 87, tag1="starred")
    validation = validation_make(agent, address(2), response=90, tag="zk")
    return agent, feedback, validation


def test_changelists_and_search(staff, data):
    agent, feedback, validation = data
    page = staff.get("/admin/agents/agent/?q=Searchable")
    assert page.status_code == 200
    assert b"Searchable Agent" in page.content
    assert b"every IPFS gateway failed" in page.content
    assert staff.get(f"/admin/agents/agent/?q={agent.owner}").status_code == 200
    assert staff.get("/admin/agents/agent/?registration_file__status__exact=error").status_code == 200
    page = staff.get(f"/admin/agents/feedback/?q={feedback.client_address}")
    assert page.status_code == 200
    assert feedback.client_address.encode() in page.content
    assert staff.get(f"/admin/agents/validation/?q={validation.request_hash}").status_code == 200


def test_detail_pages_are_read_only(staff, data):
    agent, feedback, validation = data
    page = staff.get(f"/admin/agents/agent/{agent.pk}/change/")
    assert page.status_code == 200
    assert b"every IPFS gateway failed" in page.content
    assert b'name="_save"' not in page.content
    assert staff.get(f"/admin/agents/feedback/{feedback.pk}/change/").status_code == 200
    assert staff.get(f"/admin/agents/validation/{validation.pk}/change/").status_code == 200
    assert staff.get("/admin/agents/agent/add/").status_code == 403
    assert staff.post(f"/admin/agents/agent/{agent.pk}/delete/").status_code == 403


def test_refetch_action_schedules_the_file(staff, data, monkeypatch):
    from agents import admin as agents_admin

    sent = []
    monkeypatch.setattr(agents_admin, "enqueue_file_fetches", lambda **kw: sent.append(kw))
    agent, _, _ = data
    from agents.models import Agent

    Agent.objects.filter(pk=agent.pk).update(agent_uri="https://agents.example/0.json")
    response = staff.post(
        "/admin/agents/agent/", {"action": "refetch_registration_file", "_selected_action": [agent.pk]}, follow=True
    )
    assert response.status_code == 200
    assert b"1 registration file fetch(es) scheduled" in response.content
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert row.status == FileStatus.PENDING
    assert row.uri == "https://agents.example/0.json"
    assert sent == [{"agent_pks": [agent.pk], "feedback_pks": []}]
