"""agents/services.py: scheduling, the fetch state machine (ok, parse error,
transient retries, permanent errors, unsupported, superseded), feedback hash checks,
re-fetches and the sweeper — against real loopback servers."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from eth_utils import keccak

from agents import services
from agents.models import Agent, FeedbackFile, FileStatus, RegistrationFile
from agents.services import (
    feedback_file_fetch,
    feedback_files_schedule,
    files_refetch_due,
    files_sweep,
    registration_file_fetch,
    registration_files_schedule,
)

from .factories import CHAIN_ID, IDENTITY, address, agent_make, chain_make, feedback_make

pytestmark = pytest.mark.django_db

CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def registration(agent_id: int, **extra) -> bytes:
    doc = {
        "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
        "name": f"agent {agent_id}",
        "description": "does things",
        "active": True,
        "x402Support": True,
        "supportedTrust": ["reputation"],
        "services": [{"name": "MCP", "endpoint": "https://mcp.example", "version": "2025-06-18"}],
        "registrations": [{"agentId": agent_id, "agentRegistry": f"eip155:{CHAIN_ID}:{IDENTITY}"}],
    }
    doc.update(extra)
    return json.dumps(doc).encode()


@pytest.fixture
def chain():
    return chain_make()


def refetch(agent: Agent) -> Agent:
    return Agent.objects.select_related("registration_file").get(pk=agent.pk)


def test_schedule_only_when_the_uri_changed(chain, file_server):
    agent = agent_make(chain, 0, agent_uri=file_server.url("/0.json"))
    assert registration_files_schedule(agent_pks=[agent.pk]) == [agent.pk]
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert row.status == FileStatus.PENDING
    assert row.uri == agent.agent_uri
    assert registration_files_schedule(agent_pks=[agent.pk]) == []
    assert registration_files_schedule(agent_pks=[agent.pk], force=True) == [agent.pk]


def test_fetch_ok_fills_the_agent(chain, file_server):
    agent = agent_make(chain, 7, agent_uri=file_server.route("/7.json", registration(7)))
    registration_files_schedule(agent_pks=[agent.pk])
    outcome = registration_file_fetch(agent_pk=agent.pk)
    assert outcome.status == "ok"
    agent = refetch(agent)
    assert agent.name == "agent 7"
    assert agent.has_mcp
    assert not agent.has_web
    assert agent.active is True
    assert agent.x402_support is True
    assert agent.supported_trust == ["reputation"]
    assert agent.registrations_backlink is True
    assert agent.services[0]["version"] == "2025-06-18"
    file = agent.registration_file
    assert file.status == FileStatus.OK
    assert file.content_hash == "0x" + keccak(registration(7)).hex()
    assert json.loads(file.raw)["name"] == "agent 7"
    assert file.parsed["services"][0]["name"] == "MCP"
    assert file.attempts == 1
    assert file.next_refetch_at is not None  # http(s) files are read again later
    # Running the task again (a duplicate message) does nothing.
    assert registration_file_fetch(agent_pk=agent.pk).status == "skipped"


def test_backlink_false_when_the_file_names_another_agent(chain, file_server):
    agent = agent_make(chain, 8, agent_uri=file_server.route("/8.json", registration(9)))
    registration_files_schedule(agent_pks=[agent.pk])
    registration_file_fetch(agent_pk=agent.pk)
    assert refetch(agent).registrations_backlink is False


def test_data_uri_files_are_immutable(chain):
    uri = "data:application/json;base64," + base64.b64encode(registration(3)).decode()
    agent = agent_make(chain, 3, agent_uri=uri)
    registration_files_schedule(agent_pks=[agent.pk])
    assert registration_file_fetch(agent_pk=agent.pk).status == "ok"
    agent = refetch(agent)
    assert agent.name == "agent 3"
    assert agent.registration_file.next_refetch_at is None


def test_a_new_uri_clears_the_old_file_at_once(chain, file_server):
    agent = agent_make(chain, 1, agent_uri=file_server.route("/1.json", registration(1)))
    registration_files_schedule(agent_pks=[agent.pk])
    registration_file_fetch(agent_pk=agent.pk)
    Agent.objects.filter(pk=agent.pk).update(agent_uri=file_server.route("/1b.json", registration(1, name="renamed")))
    assert registration_files_schedule(agent_pks=[agent.pk]) == [agent.pk]
    agent = refetch(agent)
    assert agent.name == ""
    assert agent.registration_file.status == FileStatus.PENDING
    assert agent.registration_file.raw == ""
    registration_file_fetch(agent_pk=agent.pk)
    assert refetch(agent).name == "renamed"


def test_invalid_file_is_an_error_with_a_reason_and_clears_the_agent(chain, file_server):
    agent = agent_make(chain, 2, agent_uri=file_server.route("/2.json", registration(2)))
    registration_files_schedule(agent_pks=[agent.pk])
    registration_file_fetch(agent_pk=agent.pk)
    file_server.route("/2.json", json.dumps({"name": 5}))
    registration_files_schedule(agent_pks=[agent.pk], force=True)
    outcome = registration_file_fetch(agent_pk=agent.pk)
    assert outcome.status == "error"
    agent = refetch(agent)
    assert agent.registration_file.error == "name must be a string, not number"
    assert agent.registration_file.raw == '{"name": 5}'  # the bytes are kept to show
    assert agent.name == ""
    assert agent.registrations_backlink is None
    assert agent.registration_file.next_refetch_at is not None


@pytest.mark.parametrize(("path", "status"), [("/gone.json", 404), ("/forbidden.json", 403)])
def test_permanent_http_errors_are_not_retried(chain, file_server, path, status):
    if status != 404:
        file_server.route(path, b"{}", status=status)
    agent = agent_make(chain, 4, agent_uri=file_server.url(path))
    registration_files_schedule(agent_pks=[agent.pk])
    outcome = registration_file_fetch(agent_pk=agent.pk)
    assert outcome.status == "error"
    assert outcome.retry_in is None
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert row.error.endswith(f"HTTP {status}")
    assert row.attempts == 1


def test_transient_errors_are_retried_on_the_ladder_then_given_up(chain, file_server, settings):
    settings.FILE_FETCH_RETRY_DELAYS = [5, 50]
    file_server.route("/busy.json", registration(5), fail_first=10)
    agent = agent_make(chain, 5, agent_uri=file_server.url("/busy.json"))
    registration_files_schedule(agent_pks=[agent.pk])
    first = registration_file_fetch(agent_pk=agent.pk)
    assert (first.status, first.retry_in) == ("retry", 5)
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert row.status == FileStatus.PENDING
    assert row.error.endswith("HTTP 503")
    assert registration_file_fetch(agent_pk=agent.pk).retry_in == 50
    last = registration_file_fetch(agent_pk=agent.pk)
    assert (last.status, last.retry_in) == ("error", None)
    assert RegistrationFile.objects.get(pk=agent.pk).attempts == 3


def test_transient_then_success(chain, file_server):
    file_server.route("/flaky.json", registration(6), fail_first=1)
    agent = agent_make(chain, 6, agent_uri=file_server.url("/flaky.json"))
    registration_files_schedule(agent_pks=[agent.pk])
    assert registration_file_fetch(agent_pk=agent.pk).status == "retry"
    assert registration_file_fetch(agent_pk=agent.pk).status == "ok"
    assert refetch(agent).name == "agent 6"


def test_unsupported_and_empty_uris(chain):
    agent = agent_make(chain, 10, agent_uri="ar://abcdef")
    registration_files_schedule(agent_pks=[agent.pk])
    assert registration_file_fetch(agent_pk=agent.pk).status == "unsupported"
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert "'ar' is not fetched" in row.error
    assert row.next_refetch_at is None
    empty = agent_make(chain, 11, agent_uri="")
    assert registration_files_schedule(agent_pks=[empty.pk]) == []
    assert RegistrationFile.objects.get(pk=empty.pk).status == FileStatus.UNSUPPORTED


def test_ipfs_file_through_the_second_gateway(chain, file_server, second_file_server, settings):
    settings.IPFS_GATEWAYS = [file_server.base_url, second_file_server.base_url]
    second_file_server.route(f"/ipfs/{CID}", registration(12))
    file_server.down()
    agent = agent_make(chain, 12, agent_uri=f"ipfs://{CID}")
    registration_files_schedule(agent_pks=[agent.pk])
    assert registration_file_fetch(agent_pk=agent.pk).status == "ok"
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert row.source_url == second_file_server.url(f"/ipfs/{CID}")
    assert row.next_refetch_at is None  # content-addressed


def test_a_fetch_superseded_while_in_flight_writes_nothing(chain, file_server, monkeypatch):
    agent = agent_make(chain, 13, agent_uri=file_server.route("/old.json", registration(13, name="old")))
    file_server.route("/new.json", registration(13, name="new"))
    registration_files_schedule(agent_pks=[agent.pk])
    real_fetch = services.file_fetch

    def fetch_then_uri_changes(uri, **kwargs):
        result = real_fetch(uri, **kwargs)
        Agent.objects.filter(pk=agent.pk).update(agent_uri=file_server.url("/new.json"))
        registration_files_schedule(agent_pks=[agent.pk])
        return result

    monkeypatch.setattr(services, "file_fetch", fetch_then_uri_changes)
    assert registration_file_fetch(agent_pk=agent.pk).status == "skipped"
    assert refetch(agent).name == ""
    monkeypatch.setattr(services, "file_fetch", real_fetch)
    assert registration_file_fetch(agent_pk=agent.pk).status == "ok"
    assert refetch(agent).name == "new"


def test_feedback_file_hash_match_mismatch_and_fields(chain, file_server):
    agent = agent_make(chain, 20)
    body = json.dumps({"text": "great", "mcp": {"tool": "t"}, "proofOfPayment": {"txHash": "0x1"}}).encode()
    good = "0x" + keccak(body).hex()
    uri = file_server.route("/f.json", body)
    ok = feedback_make(agent, address(1), 1, 90, feedback_uri=uri, feedback_hash=good)
    bad = feedback_make(agent, address(2), 1, 90, feedback_uri=uri, feedback_hash="0x" + "11" * 32)
    none = feedback_make(agent, address(3), 1, 90, feedback_uri=uri, feedback_hash="0x" + "00" * 32)
    no_uri = feedback_make(agent, address(4), 1, 90)
    scheduled = feedback_files_schedule(feedback_pks=[ok.pk, bad.pk, none.pk, no_uri.pk])
    assert scheduled == sorted([ok.pk, bad.pk, none.pk])
    for pk in scheduled:
        assert feedback_file_fetch(feedback_pk=pk).status == "ok"
    files = {f.pk: f for f in FeedbackFile.objects.all()}
    assert files[ok.pk].hash_status == "match"
    assert files[bad.pk].hash_status == "mismatch"  # shown, not hidden: the file is still parsed
    assert files[bad.pk].text == "great"
    assert files[none.pk].hash_status == "absent"
    assert files[ok.pk].mcp == {"tool": "t"}
    assert files[ok.pk].proof_of_payment == {"txHash": "0x1"}
    assert files[ok.pk].next_refetch_at is None
    assert feedback_files_schedule(feedback_pks=[ok.pk]) == []


def test_refetch_due_marks_pending(chain, file_server):
    agent = agent_make(chain, 30, agent_uri=file_server.route("/30.json", registration(30)))
    registration_files_schedule(agent_pks=[agent.pk])
    registration_file_fetch(agent_pk=agent.pk)
    assert files_refetch_due() == ([], [])
    later = timezone.now() + timedelta(days=2)
    assert files_refetch_due(now=later) == ([agent.pk], [])
    row = RegistrationFile.objects.get(pk=agent.pk)
    assert row.status == FileStatus.PENDING
    assert row.next_refetch_at is None
    file_server.route("/30.json", registration(30, name="changed"))
    assert registration_file_fetch(agent_pk=agent.pk).status == "ok"
    assert refetch(agent).name == "changed"


def test_sweeper_finds_lost_messages_missing_rows_and_changed_uris(chain, file_server, settings):
    settings.FILE_PENDING_GRACE_SECONDS = 60
    now = timezone.now()
    stuck = agent_make(chain, 40, agent_uri=file_server.url("/40.json"))
    registration_files_schedule(agent_pks=[stuck.pk], now=now - timedelta(minutes=5))
    fresh = agent_make(chain, 41, agent_uri=file_server.url("/41.json"))
    registration_files_schedule(agent_pks=[fresh.pk], now=now)
    never = agent_make(chain, 42, agent_uri=file_server.url("/42.json"))  # receiver never ran
    changed = agent_make(chain, 43, agent_uri=file_server.url("/43.json"))
    registration_files_schedule(agent_pks=[changed.pk], now=now)
    RegistrationFile.objects.filter(pk=changed.pk).update(status=FileStatus.OK)
    Agent.objects.filter(pk=changed.pk).update(agent_uri=file_server.url("/43b.json"))
    lost_feedback = feedback_make(stuck, address(9), 1, 1, feedback_uri="ipfs://" + "b" * 50, created_at=now)
    agents, feedback = files_sweep(now=now)
    assert agents == sorted([stuck.pk, never.pk, changed.pk])
    assert feedback == [lost_feedback.pk]
    # Swept rows are not sent again before another grace period.
    assert files_sweep(now=now + timedelta(seconds=10)) == ([], [])
