"""triggers/services.py: candidates through the key index, exactly-once evaluation,
policy, stateful conditions under locks, retraction, confirmations, dry runs.

Events are real ChainEvent rows (tests/fixtures/factories.py); deliveries are real
outbox rows created through the actions services.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from actions.models import Delivery
from actions.services import destination_create
from indexing.models import ChainCursor
from tests.fixtures.factories import make_chain, make_event, make_feedback_event, make_org
from triggers.models import EventEvaluation, Match, PendingConfirmation, Trigger, TriggerKey, TriggerState
from triggers.services import (
    ActionSpec,
    events_evaluate,
    events_retract,
    pending_confirmations_process,
    trigger_create,
    trigger_dry_run,
    trigger_update,
    triggers_sweep,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_org()


@pytest.fixture
def hook(org):
    return destination_create(
        organization=org, name="hook", channel="webhook", config={"url": "http://127.0.0.1:9/hooks"}
    )


def low_feedback_trigger(org, hook, **kwargs):
    return trigger_create(
        organization=org,
        name="agent 42 below 50",
        conditions={
            "all": [{"type": "agent_id", "values": [42]}, {"type": "value_threshold", "op": "lt", "value": 50}]
        },
        actions=[ActionSpec(destination=hook, template='{"text": "score {{ event.args.valueNormalized }}"}')],
        **kwargs,
    )


#
# Saving
#


def test_create_validates_conditions_and_actions_together(org, hook):
    with pytest.raises(ValidationError) as info:
        trigger_create(organization=org, name="bad", conditions={"type": "value_threshold", "op": "lt"})
    assert "conditions" in info.value.message_dict
    other = make_org("Other")
    foreign = destination_create(organization=other, name="x", channel="webhook", config={"url": "http://127.0.0.1:9/"})
    with pytest.raises(ValidationError) as info:
        trigger_create(organization=org, name="t", actions=[ActionSpec(destination=foreign)])
    assert info.value.message_dict["actions"] == ["actions[0].destination: no such destination"]
    assert not Trigger.objects.exists()


def test_keys_narrow_by_agent_and_type(org, hook):
    trigger = low_feedback_trigger(org, hook, description="x")
    trigger.event_types = ["NewFeedback"]
    trigger = trigger_update(trigger=trigger, event_types=["NewFeedback"], chain_ids=[31337])
    assert list(trigger.keys.values_list("chain_id", "event_type", "agent_id")) == [(31337, "NewFeedback", 42)]
    trigger_update(trigger=trigger, enabled=False)
    assert not TriggerKey.objects.filter(trigger=trigger).exists()


def test_contradictory_filters_index_nothing(org, hook):
    trigger = trigger_create(
        organization=org,
        name="never",
        registries=["identity"],
        event_types=["NewFeedback"],
        actions=[ActionSpec(destination=hook)],
    )
    assert not trigger.keys.exists()


#
# Evaluation
#


def test_a_match_writes_one_delivery_per_action_and_a_second_evaluation_is_a_no_op(org, hook):
    second = destination_create(
        organization=org, name="hook2", channel="webhook", config={"url": "http://127.0.0.1:9/"}
    )
    trigger = low_feedback_trigger(org, hook)
    trigger_update(trigger=trigger, actions=[ActionSpec(destination=hook), ActionSpec(destination=second)])
    low = make_feedback_event(value=45)
    high = make_feedback_event(value=95)
    other_agent = make_feedback_event(value=10, agent_id=7)
    report = events_evaluate(event_ids=[low.pk, high.pk, other_agent.pk])
    assert report.matches == 1
    match = Match.objects.get()
    assert match.event == low
    assert match.status == Match.Status.FIRED
    assert {d.destination_id for d in match.deliveries.all()} == {hook.pk, second.pk}
    assert Delivery.objects.count() == 2
    assert events_evaluate(event_ids=[low.pk, high.pk]).claimed == 0
    assert Match.objects.count() == 1
    assert Delivery.objects.count() == 2
    assert EventEvaluation.objects.get(event=low).matches == 1


def test_the_frozen_payload_renders_event_data(org, hook):
    low_feedback_trigger(org, hook)
    event = make_feedback_event(value=4525, decimals=2)
    events_evaluate(event_ids=[event.pk])
    delivery = Delivery.objects.get()
    assert "score 45.25" in str(delivery.payload)


def test_default_payloads_name_the_transaction(org, hook):
    """The default webhook body and Telegram text promise ``event.transaction_hash``
    (docs/actions.md); the context once carried only ``tx_hash``, so the body lacked it
    and every Telegram message read "Tx ?"."""
    chat = destination_create(
        organization=org,
        name="chat",
        channel="telegram",
        config={"chat_id": "42"},
        secret="123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    )
    trigger_create(
        organization=org,
        name="all feedback",
        event_types=["NewFeedback"],
        actions=[ActionSpec(destination=hook), ActionSpec(destination=chat)],
    )
    event = make_feedback_event(value=45)
    events_evaluate(event_ids=[event.pk])
    payloads = {d.destination_id: d.payload for d in Delivery.objects.all()}
    assert event.tx_hash
    assert json.loads(payloads[hook.pk]["body"])["event"]["transaction_hash"] == event.tx_hash
    assert event.tx_hash in str(payloads[chat.pk])


def test_backfill_events_do_not_fire_unless_asked(org, hook):
    trigger = low_feedback_trigger(org, hook)
    old = make_feedback_event(value=1, is_backfill=True)
    events_evaluate(event_ids=[old.pk])
    assert not Match.objects.exists()
    trigger_update(trigger=trigger, fire_on_backfill=True)
    older = make_feedback_event(value=1, is_backfill=True)
    events_evaluate(event_ids=[older.pk])
    assert Match.objects.filter(event=older).exists()


def test_paused_organization_fires_nothing(org, hook):
    low_feedback_trigger(org, hook)
    org.paused = True
    org.save()
    events_evaluate(event_ids=[make_feedback_event(value=1).pk])
    assert not Match.objects.exists()


def test_cooldown_and_max_fires_suppress_and_say_why(org, hook):
    low_feedback_trigger(org, hook, cooldown_seconds=3600)
    first, second = make_feedback_event(value=1), make_feedback_event(value=2)
    events_evaluate(event_ids=[first.pk])
    events_evaluate(event_ids=[second.pk])
    assert Match.objects.get(event=first).status == Match.Status.FIRED
    suppressed = Match.objects.get(event=second)
    assert suppressed.status == Match.Status.SUPPRESSED
    assert "cooldown" in suppressed.reason
    assert not suppressed.deliveries.exists()

    Trigger.objects.all().delete()
    low_feedback_trigger(org, hook, max_fires=2, max_fires_window_seconds=600)
    events = [make_feedback_event(value=i) for i in range(4)]
    events_evaluate(event_ids=[e.pk for e in events])
    statuses = [Match.objects.get(event=e).status for e in events]
    assert statuses == ["fired", "fired", "suppressed", "suppressed"]


def test_a_trigger_on_any_chain_and_any_event_sees_everything(org, hook):
    trigger_create(organization=org, name="all", actions=[ActionSpec(destination=hook)])
    other_chain = make_chain(chain_id=8453, name="Base")
    events = [
        make_event("Registered", {"agentId": "1", "agentURI": "", "owner": "0x" + "11" * 20}, agent_id=1),
        make_feedback_event(chain=other_chain),
    ]
    assert events_evaluate(event_ids=[e.pk for e in events]).matches == 2


def test_stateful_rate_condition_counts_under_a_row_lock(org, hook):
    trigger = trigger_create(
        organization=org,
        name="burst",
        conditions={"type": "rate", "window_seconds": 3600, "op": "gte", "count": 3, "per": "trigger"},
        actions=[ActionSpec(destination=hook)],
    )
    now = timezone.now()
    events = [make_feedback_event(value=i, block_timestamp=now + timedelta(seconds=i)) for i in range(4)]
    for event in events:
        events_evaluate(event_ids=[event.pk])
    assert [Match.objects.filter(event=e).exists() for e in events] == [False, False, True, True]
    (state,) = TriggerState.objects.filter(trigger=trigger)
    assert len(state.data["timestamps"]) == 4


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_evaluations_lose_no_state_update():
    org = make_org()
    hook = destination_create(organization=org, name="h", channel="webhook", config={"url": "http://127.0.0.1:9/"})
    trigger = trigger_create(
        organization=org,
        name="count",
        conditions={"type": "rate", "window_seconds": 86400, "op": "gte", "count": 1000, "per": "trigger"},
        actions=[ActionSpec(destination=hook)],
    )
    now = timezone.now()
    events = [make_feedback_event(value=i, block_timestamp=now + timedelta(milliseconds=i)) for i in range(50)]
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def worker(chunk):
        try:
            barrier.wait()
            for event in chunk:
                events_evaluate(event_ids=[event.pk])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(events[i::10],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = TriggerState.objects.get(trigger=trigger)
    assert len(state.data["timestamps"]) == 50


#
# Retraction and confirmations
#


def test_removed_events_cancel_pending_deliveries_once(org, hook):
    low_feedback_trigger(org, hook)
    event = make_feedback_event(value=1)
    events_evaluate(event_ids=[event.pk])
    delivery = Delivery.objects.get()
    event.removed, event.removed_at = True, timezone.now()
    event.save()
    assert events_retract(event_ids=[event.pk]) == 1
    delivery.refresh_from_db()
    assert delivery.status == "cancelled"
    assert Match.objects.get().status == Match.Status.RETRACTED
    assert events_retract(event_ids=[event.pk]) == 0


def test_a_removed_event_is_never_evaluated(org, hook):
    low_feedback_trigger(org, hook)
    event = make_feedback_event(value=1)
    event.removed = True
    event.save()
    events_evaluate(event_ids=[event.pk])
    assert not Match.objects.exists()


def test_confirmed_mode_waits_for_confirmations(org, hook):
    low_feedback_trigger(org, hook, confirmation_mode="confirmed", confirmations=5)
    chain = make_chain()
    ChainCursor.objects.update_or_create(chain=chain, defaults={"head_block": 100})
    event = make_feedback_event(value=1, block_number=100)
    events_evaluate(event_ids=[event.pk])
    assert not Match.objects.exists()
    assert PendingConfirmation.objects.get().due_block == 105
    assert pending_confirmations_process() == 0
    ChainCursor.objects.filter(chain=chain).update(head_block=105)
    assert pending_confirmations_process() == 1
    assert Match.objects.get().event == event
    assert not PendingConfirmation.objects.exists()


def test_sweeper_finds_events_whose_evaluation_was_lost(org, hook):
    event = make_feedback_event(value=1)
    type(event).objects.filter(pk=event.pk).update(indexed_at=timezone.now() - timedelta(minutes=5))
    to_evaluate, _ = triggers_sweep()
    assert to_evaluate == [event.pk]
    events_evaluate(event_ids=to_evaluate)
    assert triggers_sweep() == ([], [])


#
# Dry run
#


def test_dry_run_shows_matches_and_messages_and_writes_nothing(org, hook):
    trigger = low_feedback_trigger(org, hook)
    events = [make_feedback_event(value=45), make_feedback_event(value=95)]
    results = trigger_dry_run(trigger=trigger, events=events)
    assert [r.matched for r in results] == [True, False]
    assert "score 45" in str(results[0].messages[0]["payload"])
    assert not Match.objects.exists()
    assert not Delivery.objects.exists()
    unsaved = Trigger(organization=org, name="draft", conditions={"type": "value_threshold", "op": "gt", "value": 90})
    assert [r.matched for r in trigger_dry_run(trigger=unsaved, actions=[], events=events)] == [False, True]


def test_a_template_failing_on_the_event_is_kept_on_the_match_and_blocks_nothing(org, hook):
    good = destination_create(organization=org, name="good", channel="webhook", config={"url": "http://127.0.0.1:9/"})
    trigger_create(
        organization=org,
        name="broken template",
        conditions={"type": "value_threshold", "op": "lt", "value": 50},
        actions=[
            ActionSpec(destination=hook, template='{"ratio": "{{ 1 / event.args.valueDecimals }}"}'),
            ActionSpec(destination=good),
        ],
    )
    failing, fine = make_feedback_event(value=1, decimals=0), make_feedback_event(value=2, decimals=0)
    report = events_evaluate(event_ids=[failing.pk, fine.pk])
    assert report.matches == 2
    match = Match.objects.get(event=failing)
    assert match.reason.startswith("template error: destination")
    assert "division" in match.reason.lower() or "zero" in match.reason.lower()
    assert list(match.deliveries.values_list("destination_id", flat=True)) == [good.pk]
