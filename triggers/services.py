"""Trigger services: saving (validation + candidate keys), evaluation, retraction,
confirmation waits, dry runs and the sweeper.

Evaluation of a batch of events is ONE transaction: it claims the events
(``EventEvaluation`` rows, inserted with ON CONFLICT DO NOTHING so a concurrent or
repeated evaluation claims nothing), evaluates every candidate trigger, updates
stateful conditions under row locks, applies the notification policy under the
trigger's row lock, and writes each Match with one Delivery per action. The outbox
rows are committed before any message reaches Redis (deliveries are dispatched on
commit by ``actions``), so a lost message is found again by a sweeper, and a
duplicated message finds the event already claimed.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from actions.models import Delivery, Destination
from actions.services import (
    DeliverySpec,
    deliveries_create,
    delivery_create,
    delivery_retract,
    destination_test,
    payload_build,
)
from actions.templates import PayloadError, TemplateError, template_check
from agents.selectors import agent_views_for_events
from erc8004 import metrics
from erc8004.bulk import bulk_insert
from erc8004.logs import log_context
from erc8004.models import Organization
from indexing.models import Chain, ChainCursor, ChainEvent, Registry

from .conditions import EVENT_TYPES, Condition, EvaluationContext, InvalidCondition, condition_parse, event_view
from .models import EventEvaluation, Match, PendingConfirmation, Trigger, TriggerAction, TriggerKey, TriggerState

__all__ = (
    "ActionSpec",
    "DryRunResult",
    "TestSendResult",
    "evaluation_context_build",
    "events_evaluate",
    "events_retract",
    "pending_confirmations_process",
    "trigger_actions_validate",
    "trigger_create",
    "trigger_dry_run",
    "trigger_keys_rebuild",
    "trigger_test",
    "trigger_update",
    "trigger_validate",
    "trigger_watched_events",
    "triggers_sweep",
)

logger = logging.getLogger("erc8004.triggers")

REGISTRY_EVENT_TYPES = {
    Registry.IDENTITY: ("Registered", "URIUpdated", "MetadataSet", "Transfer", "Approval", "ApprovalForAll"),
    Registry.REPUTATION: ("NewFeedback", "FeedbackRevoked", "ResponseAppended"),
    Registry.VALIDATION: ("ValidationRequest", "ValidationResponse"),
}
# Aliases of the seed system's flat template variables, for users migrating templates.
SEED_ALIASES = {
    "client_address": "clientAddress",
    "feedback_index": "feedbackIndex",
    "tag1": "tag1",
    "tag2": "tag2",
    "file_uri": "feedbackURI",
    "file_hash": "feedbackHash",
    "responder": "responder",
    "response_uri": "responseURI",
    "validator_address": "validatorAddress",
    "request_uri": "requestURI",
    "request_hash": "requestHash",
    "response": "response",
    "response_hash": "responseHash",
    "validation_tag": "tag",
    "token_uri": "agentURI",
}


#
# Saving
#


def trigger_validate(
    *, chain_ids: Any, registries: Any, event_types: Any, conditions: Any, confirmation_mode: str, confirmations: int
) -> Condition:
    """One validation path for the API and the admin: raises ``ValidationError``
    with field-keyed messages; returns the parsed condition."""
    errors: dict[str, list[str]] = {}
    if not isinstance(chain_ids, list) or not all(isinstance(c, int) and c > 0 for c in chain_ids):
        errors["chain_ids"] = ["must be a list of positive chain ids (empty = every chain)"]
    if not isinstance(registries, list) or any(r not in Registry.values for r in registries):
        errors["registries"] = [f"must be a list of {', '.join(Registry.values)} (empty = all)"]
    if not isinstance(event_types, list) or any(t not in EVENT_TYPES for t in event_types):
        errors["event_types"] = [f"must be a list of event names among {', '.join(EVENT_TYPES)} (empty = all)"]
    if confirmation_mode == Trigger.Confirmation.CONFIRMED and not confirmations:
        errors["confirmations"] = ["confirmed mode needs at least 1 confirmation"]
    condition = None
    try:
        condition = condition_parse(conditions)
    except InvalidCondition as exc:
        errors["conditions"] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    assert condition is not None
    return condition


@dataclass(frozen=True)
class ActionSpec:
    """One action of a trigger: where to send, and the template to render."""

    destination: Destination
    template: str = ""
    enabled: bool = True


_POLICY_FIELDS = (
    "description",
    "enabled",
    "cooldown_seconds",
    "max_fires",
    "max_fires_window_seconds",
    "fire_on_backfill",
    "confirmation_mode",
    "confirmations",
)


def _template_problem(destination: Destination, template: str) -> str | None:
    """Why a template cannot work for this destination's channel, checked when the
    trigger is saved (a syntax error must not wait for the first match to surface
    as a dead delivery). Telegram: a text template in the destination's parse mode;
    webhook and MCP: a JSON document whose strings are templates."""
    if not template.strip():
        return None
    try:
        if destination.channel == "telegram":
            template_check(template, mode=destination.config.get("parse_mode", "MarkdownV2"))
            return None
        try:
            document = json.loads(template)
        except ValueError as exc:
            return f"a {destination.channel} template is a JSON document: {exc}"
        pending = [document]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)
            elif isinstance(node, str):
                template_check(node)
        if destination.channel == "mcp" and not isinstance(document, dict):
            return "MCP tool arguments must be a JSON object"
    except TemplateError as exc:
        return str(exc)
    return None


def trigger_actions_validate(*, organization_id: int, actions: list[ActionSpec]) -> None:
    """Check a trigger's actions on their own (the admin's inline formset calls this
    before anything is saved). Errors are ``actions[<index>].<field>: <why>``."""
    _actions_validate(organization_id, actions)


def _actions_validate(organization_id: int, actions: list[ActionSpec]) -> None:
    """Errors are ``actions[<index>].<field>: <why>`` — the API nests them by index."""
    errors = []
    for i, action in enumerate(actions):
        if action.destination.organization_id != organization_id:
            errors.append(f"actions[{i}].destination: no such destination")
        elif len(action.template) > 8000:
            errors.append(f"actions[{i}].template: at most 8000 characters")
        else:
            problem = _template_problem(action.destination, action.template)
            if problem:
                errors.append(f"actions[{i}].template: {problem}")
    if errors:
        raise ValidationError({"actions": errors})


def _trigger_check(trigger: Trigger, organization_id: int, actions: list[ActionSpec] | None) -> None:
    """Filters, conditions, policy and actions validated together: one
    ``ValidationError`` carrying every problem, so a caller fixes them in one go."""
    errors: dict[str, list[str]] = {}
    try:
        trigger_validate(
            chain_ids=trigger.chain_ids,
            registries=trigger.registries,
            event_types=trigger.event_types,
            conditions=trigger.conditions,
            confirmation_mode=trigger.confirmation_mode,
            confirmations=trigger.confirmations,
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if actions is not None:
        try:
            _actions_validate(organization_id, actions)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    try:
        trigger.full_clean(exclude=("conditions", "chain_ids", "registries", "event_types", "recent_fires"))
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def trigger_create(
    *,
    organization,
    name: str,
    chain_ids: list[int] | None = None,
    registries: list[str] | None = None,
    event_types: list[str] | None = None,
    conditions: Any = None,
    actions: list[ActionSpec] | None = None,
    created_by=None,
    **policy: Any,
) -> Trigger:
    """Create a working trigger — conditions and actions validated together, in one
    transaction (the seed's API silently dropped nested actions; this never does)."""
    unknown = set(policy) - set(_POLICY_FIELDS)
    if unknown:
        raise TypeError(f"unknown trigger fields: {sorted(unknown)}")
    trigger = Trigger(
        organization=organization,
        name=name,
        chain_ids=chain_ids or [],
        registries=registries or [],
        event_types=event_types or [],
        conditions=conditions or {},
        created_by=created_by,
        **policy,
    )
    actions = actions or []
    _trigger_check(trigger, organization.pk, actions)
    trigger.save()
    TriggerAction.objects.bulk_create(
        [
            TriggerAction(
                trigger=trigger, destination=a.destination, template=a.template, enabled=a.enabled, position=i
            )
            for i, a in enumerate(actions)
        ]
    )
    trigger_keys_rebuild(trigger=trigger)
    return trigger


@transaction.atomic
def trigger_update(*, trigger: Trigger, actions: list[ActionSpec] | None = None, **fields: Any) -> Trigger:
    """Change a trigger (and replace its actions when given); same validation as create."""
    allowed = {"name", "chain_ids", "registries", "event_types", "conditions", *_POLICY_FIELDS}
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"unknown trigger fields: {sorted(unknown)}")
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    for name, value in fields.items():
        setattr(trigger, name, value)
    _trigger_check(trigger, trigger.organization_id, actions)
    trigger.save()
    if actions is not None:
        trigger.actions.all().delete()
        TriggerAction.objects.bulk_create(
            [
                TriggerAction(
                    trigger=trigger, destination=a.destination, template=a.template, enabled=a.enabled, position=i
                )
                for i, a in enumerate(actions)
            ]
        )
    trigger_keys_rebuild(trigger=trigger)
    return trigger


def _top_level_leaves(condition: Condition, kind: str) -> list[Condition]:
    if condition.kind == kind:
        return [condition]
    if condition.kind == "all":
        return [c for c in condition.children if c.kind == kind]
    return []


def trigger_keys_rebuild(*, trigger: Trigger) -> None:
    """Rebuild the candidate index of a trigger from its filters and conditions.

    An ``agent_id`` or ``event_type`` leaf at the top of an ``all`` narrows the keys
    (the trigger cannot match other agents/types); everything else is "any".
    """
    TriggerKey.objects.filter(trigger=trigger).delete()
    if not trigger.enabled:
        return
    condition = condition_parse(trigger.conditions)
    chains: list[int | None] = list(trigger.chain_ids) or [None]
    types: set[str] | None = set(trigger.event_types) or None
    if trigger.registries:
        allowed = {t for r in trigger.registries for t in REGISTRY_EVENT_TYPES.get(r, ())}
        types = allowed if types is None else types & allowed
    for leaf in _top_level_leaves(condition, "event_type"):
        types = set(leaf.spec["values"]) if types is None else types & set(leaf.spec["values"])
    agents: set[str] | None = None
    for leaf in _top_level_leaves(condition, "agent_id"):
        agents = set(leaf.spec["values"]) if agents is None else agents & set(leaf.spec["values"])
    if (types is not None and not types) or (agents is not None and not agents):
        return  # contradictory filters: the trigger can never match
    TriggerKey.objects.bulk_create(
        [
            TriggerKey(trigger=trigger, chain_id=c, event_type=t, agent_id=a)
            for c in chains
            for t in (sorted(types) if types is not None else [None])
            for a in (sorted(agents, key=int) if agents is not None else [None])
        ]
    )


#
# Context for templates
#


def evaluation_context_build(
    *, event: ChainEvent, agent: dict[str, Any] | None, trigger: Trigger | None
) -> dict[str, Any]:
    """The variables a message template sees (documented in docs/triggers.md)."""
    view = event_view(event)
    chain_name = getattr(event.chain, "name", "") if hasattr(event, "chain") else ""
    event_data = {
        **view,
        "id": event.pk,
        "key": f"{event.chain_id}:{event.block_hash}:{event.log_index}",
        "type": event.event_type,
        # The name the default templates and docs/actions.md use; ``tx_hash`` (the
        # condition view's name) stays for templates written against it.
        "transaction_hash": event.tx_hash,
        "block_timestamp": event.block_timestamp.isoformat(),
        "removed": event.removed,
        "is_backfill": event.is_backfill,
        "chain_name": chain_name,
    }
    context: dict[str, Any] = {
        "event": event_data,
        "agent": agent,
        "trigger": {"id": trigger.pk, "name": trigger.name} if trigger else None,
        "chain": {"id": event.chain_id, "name": chain_name},
        # Flat seed-compatible names.
        "event_id": event.pk,
        "event_type": event.event_type,
        "chain_id": event.chain_id,
        "block_number": event.block_number,
        "transaction_hash": event.tx_hash,
        "log_index": event.log_index,
        "timestamp": event.block_timestamp.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "agent_id": view["agent_id"],
        "registry": event.registry,
        "owner": (agent or {}).get("owner") or event.args.get("owner", ""),
        "score": event.args.get("valueNormalized", event.args.get("response")),
    }
    for alias, arg in SEED_ALIASES.items():
        if arg in event.args:
            context[alias] = event.args[arg]
    return context


#
# Evaluation
#

_PARSED: dict[int, tuple[datetime, Condition]] = {}


def _condition_for(trigger: Trigger) -> Condition:
    cached = _PARSED.get(trigger.pk)
    if cached and cached[0] == trigger.updated_at:
        return cached[1]
    condition = condition_parse(trigger.conditions)
    _PARSED[trigger.pk] = (trigger.updated_at, condition)
    return condition


def _claim(event_ids: list[int], phase: str) -> set[int]:
    """Insert EventEvaluation rows; return the ids this transaction now owns."""
    if not event_ids:
        return set()
    table = EventEvaluation._meta.db_table
    placeholders = ", ".join(["(%s, %s, 0, CURRENT_TIMESTAMP)"] * len(event_ids))
    params: list[Any] = []
    for event_id in event_ids:
        params += [event_id, phase]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (event_id, phase, matches, evaluated_at) VALUES {placeholders} "  # noqa: S608 - table name from the model, values bound
            "ON CONFLICT (event_id, phase) DO NOTHING RETURNING event_id",
            params,
        )
        return {row[0] for row in cursor.fetchall()}


# Trigger rows change rarely and are read for every event: a worker keeps them, and
# re-reads one only when its updated_at moved (checked with a cheap tuple query).
_TRIGGERS: dict[int, Trigger] = {}


def _triggers_load(ids: set[int]) -> dict[int, Trigger]:
    if connection.vendor == "postgresql":  # one array parameter instead of thousands (see _candidate_keys)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, updated_at FROM {Trigger._meta.db_table} WHERE id = ANY(%s) AND enabled",  # noqa: S608
                [sorted(ids)],
            )
            current = dict(cursor.fetchall())
    else:
        current = dict(Trigger.objects.filter(pk__in=ids, enabled=True).values_list("pk", "updated_at"))
    stale = [pk for pk, updated_at in current.items() if pk not in _TRIGGERS or _TRIGGERS[pk].updated_at != updated_at]
    if stale:
        for trigger in Trigger.objects.filter(pk__in=stale):
            _TRIGGERS[trigger.pk] = trigger
    if len(_TRIGGERS) > 200_000:  # bound memory if triggers churn
        _TRIGGERS.clear()
        return {t.pk: t for t in Trigger.objects.filter(pk__in=current)}
    return {pk: _TRIGGERS[pk] for pk in current}


def _candidate_keys(*, chains: set[int], types: set[str], agents: set) -> list[tuple]:
    """(trigger, chain, type, agent) index rows that can match any of these events.

    On PostgreSQL the lists travel as three array parameters (``= ANY``): a batch
    touches hundreds of agents, and Django prepares each value of an ``IN`` list
    separately — that was a fifth of the evaluation time with 10,000 triggers."""
    if connection.vendor == "postgresql":
        table = TriggerKey._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT trigger_id, chain_id, event_type, agent_id FROM {table} "  # noqa: S608 - table from the model
                "WHERE (chain_id = ANY(%s) OR chain_id IS NULL) "
                "AND (event_type = ANY(%s) OR event_type IS NULL) "
                "AND (agent_id = ANY(%s::numeric[]) OR agent_id IS NULL)",
                [sorted(chains), sorted(types), [str(int(a)) for a in agents]],
            )
            return cursor.fetchall()
    return list(
        TriggerKey.objects.filter(
            Q(chain_id__in=chains) | Q(chain_id__isnull=True),
            Q(event_type__in=types) | Q(event_type__isnull=True),
            Q(agent_id__in=agents) | Q(agent_id__isnull=True),
        ).values_list("trigger_id", "chain_id", "event_type", "agent_id")
    )


def _candidates(events: list[ChainEvent]) -> dict[int, list[Trigger]]:
    chains = {e.chain_id for e in events}
    types = {e.event_type for e in events}
    agents = {e.agent_id for e in events if e.agent_id is not None}
    keys = _candidate_keys(chains=chains, types=types, agents=agents)
    index: dict[tuple, set[int]] = defaultdict(set)
    for trigger_id, chain_id, event_type, agent_id in keys:
        index[(chain_id, event_type, None if agent_id is None else int(agent_id))].add(trigger_id)
    if not index:
        return {}
    triggers = _triggers_load({tid for ids in index.values() for tid in ids})
    out: dict[int, list[Trigger]] = {}
    for event in events:
        agent = None if event.agent_id is None else int(event.agent_id)
        ids: set[int] = set()
        for chain_id in (event.chain_id, None):
            for event_type in (event.event_type, None):
                for agent_id in (agent, None) if agent is not None else (None,):
                    ids |= index.get((chain_id, event_type, agent_id), set())
        found = [triggers[i] for i in sorted(ids) if i in triggers]
        if found:
            out[event.pk] = found
    return out


def _prefilter(trigger: Trigger, event: ChainEvent, paused: set[int] | None = None) -> bool:
    """Cheap checks before conditions: organization pause, backfill, filters."""
    if paused is None:
        paused = set(Organization.objects.filter(pk=trigger.organization_id, paused=True).values_list("pk", flat=True))
    if trigger.organization_id in paused:
        return False
    if not trigger.fire_on_backfill:
        if event.is_backfill:
            return False
        # A trigger sees what is indexed after it exists, whenever the worker gets to
        # it — not older events that happened to be evaluated late.
        if event.indexed_at and event.indexed_at < trigger.created_at:
            return False
    if trigger.chain_ids and event.chain_id not in trigger.chain_ids:
        return False
    if trigger.registries and event.registry not in trigger.registries:
        return False
    return not (trigger.event_types and event.event_type not in trigger.event_types)


@dataclass
class _Policy:
    fired: bool
    reason: str = ""


def _policy_check(trigger: Trigger, now: datetime) -> _Policy:
    """Cooldown and max-fires-per-window, decided and recorded under the trigger's lock."""
    locked = Trigger.objects.select_for_update().get(pk=trigger.pk)
    cooling = locked.cooldown_seconds and locked.last_fired_at
    if cooling and now < locked.last_fired_at + timedelta(seconds=locked.cooldown_seconds):
        return _Policy(False, f"cooldown of {locked.cooldown_seconds}s")
    recent = [
        t for t in locked.recent_fires if t > (now - timedelta(seconds=locked.max_fires_window_seconds)).timestamp()
    ]
    if locked.max_fires is not None and len(recent) >= locked.max_fires:
        return _Policy(False, f"at most {locked.max_fires} fires per {locked.max_fires_window_seconds}s")
    recent.append(now.timestamp())
    Trigger.objects.filter(pk=trigger.pk).update(
        fire_count=locked.fire_count + 1,
        last_fired_at=now,
        recent_fires=recent[-(locked.max_fires or 1) :] if locked.max_fires else [],
    )
    return _Policy(True)


def _actions_for(trigger: Trigger, cache: dict[int, list[TriggerAction]]) -> list[TriggerAction]:
    if trigger.pk not in cache:
        cache[trigger.pk] = list(
            TriggerAction.objects.filter(trigger=trigger, enabled=True)
            .select_related("destination")
            .order_by("position", "id")
        )
    return cache[trigger.pk]


def _deliveries_create(
    *, match: Match, trigger: Trigger, event: ChainEvent, context: dict[str, Any], cache: dict
) -> list[Delivery]:
    deliveries = []
    errors = []
    for action in _actions_for(trigger, cache):
        destination: Destination = action.destination
        if not destination.enabled:
            continue
        try:
            payload = payload_build(destination=destination, template=action.template, context=context)
        except PayloadError as exc:
            errors.append(f"destination {destination.pk}: {exc}")
            continue
        delivery = delivery_create(
            destination=destination,
            kind="notification",
            payload=payload,
            idempotency_key=f"match:{match.pk}:destination:{destination.pk}",
            trigger_id=trigger.pk,
            match_id=match.pk,
            event_id=event.pk,
            event_block_timestamp=event.block_timestamp,
        )
        deliveries.append(delivery)
    if deliveries:
        match.deliveries.add(*deliveries)
    if errors:
        _template_errors_record(match, errors)
    return deliveries


def _state_load(trigger: Trigger, keys: list[str]) -> dict[str, TriggerState]:
    """Create missing state rows, then lock all of them for this transaction."""
    TriggerState.objects.bulk_create([TriggerState(trigger=trigger, key=k) for k in keys], ignore_conflicts=True)
    return {s.key: s for s in TriggerState.objects.select_for_update().filter(trigger=trigger, key__in=keys)}


def _evaluate_one(
    *,
    trigger: Trigger,
    event: ChainEvent,
    agent: dict[str, Any] | None,
    now: datetime,
    action_cache: dict,
    view: dict[str, Any] | None = None,
) -> Match | None:
    condition = _condition_for(trigger)
    view = view if view is not None else event_view(event)
    ctx = EvaluationContext(agent=agent, now_timestamp=event.block_timestamp.timestamp())
    states: dict[str, TriggerState] = {}
    if condition.stateful:
        states = _state_load(trigger, condition.state_keys(view))
        ctx.state = {k: s.data for k, s in states.items()}
    matched = condition.evaluate(view, ctx)
    metrics.TRIGGERS_EVALUATED.inc()
    match = None
    if matched:
        policy = _policy_check(trigger, now)
        match, created = Match.objects.get_or_create(
            trigger=trigger,
            event=event,
            defaults={
                "status": Match.Status.FIRED if policy.fired else Match.Status.SUPPRESSED,
                "reason": policy.reason,
            },
        )
        if created and policy.fired:
            condition.fired(view, ctx)
            context = evaluation_context_build(event=event, agent=agent, trigger=trigger)
            _deliveries_create(match=match, trigger=trigger, event=event, context=context, cache=action_cache)
            metrics.TRIGGER_MATCHES.labels(outcome="fired").inc()
        elif created:
            metrics.TRIGGER_MATCHES.labels(outcome="suppressed").inc()
    for key, data in ctx.state_updates.items():
        state = states[key]
        state.data = data
        state.save(update_fields=["data", "updated_at"])
    return match


def _simple(trigger: Trigger, condition: Condition) -> bool:
    """A trigger whose decision needs no lock: no stateful condition, no cooldown or
    max-fires policy. Its matches are written in bulk at the end of the batch."""
    return not condition.stateful and not trigger.cooldown_seconds and trigger.max_fires is None


def _matches_write(*, pending: list[tuple[Trigger, ChainEvent, dict[str, Any] | None]], now: datetime) -> list[Match]:
    """Write the batch's matches of simple triggers with a fixed number of statements:
    Match rows, atomic fire counters, one query for the actions, bulk deliveries."""
    if not pending:
        return []
    matches = bulk_insert([Match(trigger_id=t.pk, event_id=e.pk, status=Match.Status.FIRED) for t, e, _ in pending])
    counts: dict[int, int] = defaultdict(int)
    for trigger, _, _ in pending:
        counts[trigger.pk] += 1
    _fire_counters_add(counts=counts, now=now)
    actions: dict[int, list[TriggerAction]] = defaultdict(list)
    for action in (
        TriggerAction.objects.filter(trigger_id__in=list(counts), enabled=True)
        .select_related("destination")
        .order_by("trigger_id", "position", "id")
    ):
        actions[action.trigger_id].append(action)
    specs: list[DeliverySpec] = []
    owners: list[Match] = []
    for match, (trigger, event, agent) in zip(matches, pending, strict=True):
        with log_context(chain_id=event.chain_id, event_id=event.pk, trigger_id=trigger.pk):
            logger.info("trigger matched (%s) %s", match.status, event.event_type)
        trigger_actions = [a for a in actions.get(trigger.pk, ()) if a.destination.enabled]
        if not trigger_actions:
            continue
        context = evaluation_context_build(event=event, agent=agent, trigger=trigger)
        errors = []
        for action in trigger_actions:
            try:
                payload = payload_build(destination=action.destination, template=action.template, context=context)
            except PayloadError as exc:
                errors.append(f"destination {action.destination_id}: {exc}")
                continue
            specs.append(
                DeliverySpec(
                    destination=action.destination,
                    payload=payload,
                    idempotency_key=f"match:{match.pk}:destination:{action.destination_id}",
                    trigger_id=trigger.pk,
                    match_id=match.pk,
                    event_id=event.pk,
                    event_block_timestamp=event.block_timestamp,
                )
            )
            owners.append(match)
        if errors:
            _template_errors_record(match, errors)
    deliveries = deliveries_create(specs=specs) if specs else []
    Match.deliveries.through.objects.bulk_create(
        [Match.deliveries.through(match_id=m.pk, delivery_id=d.pk) for m, d in zip(owners, deliveries, strict=True)],
        ignore_conflicts=True,
    )
    metrics.TRIGGER_MATCHES.labels(outcome="fired").inc(len(matches))
    return matches


def _template_errors_record(match: Match, errors: list[str]) -> None:
    """A template that fails on this event's data: never retryable, so it is kept on
    the match (visible in the API and admin) and logged, and the other actions go on."""
    match.reason = ("template error: " + "; ".join(errors))[:200]
    Match.objects.filter(pk=match.pk).update(reason=match.reason)
    logger.warning("trigger %s, event %s: %s", match.trigger_id, match.event_id, match.reason)


def _fire_counters_add(*, counts: dict[int, int], now: datetime) -> None:
    """fire_count += n and last_fired_at = now for each trigger, atomically (two
    workers firing the same trigger must not lose an increment)."""
    if connection.vendor == "postgresql":
        values = ", ".join(["(%s, %s)"] * len(counts))
        params: list[Any] = []
        for trigger_id, count in counts.items():
            params += [trigger_id, count]
        table = Trigger._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS t SET fire_count = t.fire_count + v.n, last_fired_at = %s "  # noqa: S608 - table name from the model
                f"FROM (VALUES {values}) AS v(id, n) WHERE t.id = v.id",
                [now, *params],
            )
        return
    for trigger_id, count in counts.items():
        Trigger.objects.filter(pk=trigger_id).update(fire_count=F("fire_count") + count, last_fired_at=now)


def _confirmed_enough(trigger: Trigger, event: ChainEvent, heads: dict[int, int | None]) -> bool:
    if trigger.confirmation_mode != Trigger.Confirmation.CONFIRMED:
        return True
    head = heads.get(event.chain_id)
    return head is not None and head >= event.block_number + trigger.confirmations


@dataclass
class EvaluationReport:
    claimed: int = 0
    candidates: int = 0
    matches: int = 0
    deferred: int = 0


def events_evaluate(*, event_ids: list[int]) -> EvaluationReport:
    """Evaluate every candidate trigger against these events, exactly once per event."""
    report = EvaluationReport()
    now = timezone.now()
    with transaction.atomic():
        claimed = _claim(sorted(set(event_ids)), EventEvaluation.Phase.INDEXED)
        if not claimed:
            return report
        # Row locks: a reorg marking these events removed waits for this transaction,
        # so its retraction always sees the matches made here (or we see it removed).
        events = list(
            ChainEvent.objects.select_for_update(of=("self",))
            .filter(pk__in=claimed, removed=False)
            .select_related("chain")
            .order_by("chain_id", "block_number", "log_index")
        )
        report.claimed = len(events)
        candidates = _candidates(events)
        if not candidates:
            return report
        heads = dict(ChainCursor.objects.filter(pk__in={e.chain_id for e in events}).values_list("pk", "head_block"))
        agents = agent_views_for_events([e for e in events if e.pk in candidates])
        action_cache: dict = {}
        match_counts: dict[int, int] = defaultdict(int)
        paused = set(Organization.objects.filter(paused=True).values_list("pk", flat=True))
        pending: list[tuple[Trigger, ChainEvent, dict[str, Any] | None]] = []
        for event in events:
            view = None
            agent = agents.get(event.pk)
            for trigger in candidates.get(event.pk, ()):
                if not _prefilter(trigger, event, paused):
                    continue
                view = view or event_view(event)
                report.candidates += 1
                if not _confirmed_enough(trigger, event, heads):
                    PendingConfirmation.objects.get_or_create(
                        trigger=trigger, event=event, defaults={"due_block": event.block_number + trigger.confirmations}
                    )
                    report.deferred += 1
                    continue
                condition = _condition_for(trigger)
                if _simple(trigger, condition):
                    metrics.TRIGGERS_EVALUATED.inc()
                    if condition.evaluate(view, EvaluationContext(agent=agent)):
                        pending.append((trigger, event, agent))
                        match_counts[event.pk] += 1
                        report.matches += 1
                    continue
                with log_context(chain_id=event.chain_id, event_id=event.pk, trigger_id=trigger.pk):
                    match = _evaluate_one(
                        trigger=trigger,
                        event=event,
                        agent=agent,
                        now=now,
                        action_cache=action_cache,
                        view=view,
                    )
                    if match is not None:
                        match_counts[event.pk] += 1
                        report.matches += 1
                        logger.info("trigger matched (%s) %s", match.status, event.event_type)
        _matches_write(pending=pending, now=now)
        for event_id, count in match_counts.items():
            EventEvaluation.objects.filter(event_id=event_id, phase=EventEvaluation.Phase.INDEXED).update(matches=count)
    return report


def events_retract(*, event_ids: list[int]) -> int:
    """Handle events a reorg removed: retract what their matches delivered."""
    retracted = 0
    with transaction.atomic():
        claimed = _claim(sorted(set(event_ids)), EventEvaluation.Phase.REMOVED)
        if not claimed:
            return 0
        PendingConfirmation.objects.filter(event_id__in=claimed).delete()
        matches = list(
            Match.objects.select_for_update()
            .filter(event_id__in=claimed)
            .exclude(status=Match.Status.RETRACTED)
            .prefetch_related("deliveries")
        )
        now = timezone.now()
        for match in matches:
            for delivery in match.deliveries.all():
                if delivery.kind != "retraction":
                    delivery_retract(delivery_id=delivery.pk)
            match.status, match.retracted_at = Match.Status.RETRACTED, now
            match.save(update_fields=["status", "retracted_at"])
            retracted += 1
    if retracted:
        metrics.TRIGGER_MATCHES.labels(outcome="retracted").inc(retracted)
    return retracted


def pending_confirmations_process(*, limit: int = 500) -> int:
    """Evaluate waiting (trigger, event) pairs whose confirmations have arrived."""
    done = 0
    now = timezone.now()
    heads = dict(ChainCursor.objects.values_list("pk", "head_block"))
    with transaction.atomic():
        rows = list(
            PendingConfirmation.objects.select_for_update(skip_locked=True)
            .select_related("trigger", "event__chain")
            .order_by("due_block")[:limit]
        )
        action_cache: dict = {}
        for row in rows:
            head = heads.get(row.event.chain_id)
            if row.event.removed:
                row.delete()
                continue
            if head is None or head < row.due_block:
                continue
            agent = agent_views_for_events([row.event]).get(row.event.pk)
            if row.trigger.enabled and _prefilter(row.trigger, row.event):
                _evaluate_one(trigger=row.trigger, event=row.event, agent=agent, now=now, action_cache=action_cache)
            row.delete()
            done += 1
    return done


#
# Dry run
#


@dataclass
class DryRunResult:
    event_id: int
    event_type: str
    matched: bool
    skipped: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)


def trigger_watched_events(*, trigger: Trigger, limit: int = 20) -> list[ChainEvent]:
    """The last ``limit`` indexed events the trigger watches (its chains, registries
    and event types), oldest first: what a dry run without an event id replays."""
    qs = ChainEvent.objects.filter(removed=False).select_related("chain")
    if trigger.chain_ids:
        qs = qs.filter(chain_id__in=trigger.chain_ids)
    if trigger.registries:
        qs = qs.filter(registry__in=trigger.registries)
    if trigger.event_types:
        qs = qs.filter(event_type__in=trigger.event_types)
    return list(qs.order_by("-id")[:limit])[::-1]


def trigger_dry_run(
    *, trigger: Trigger, actions: Iterable[TriggerAction] | None = None, events: Iterable[ChainEvent]
) -> list[DryRunResult]:
    """Evaluate a trigger (saved or not) against past events: which would match and
    what each action would send. Nothing is written; stateful conditions start from
    the saved state (or empty) and evolve only in memory across the given events."""
    condition = condition_parse(trigger.conditions)
    actions = list(actions if actions is not None else trigger.actions.select_related("destination"))
    events = list(events)
    agents = agent_views_for_events(events)
    state: dict[str, dict] = {}
    if trigger.pk and condition.stateful:
        state = {s.key: s.data for s in TriggerState.objects.filter(trigger_id=trigger.pk)}
    results = []
    for event in events:
        view = event_view(event)
        if trigger.chain_ids and event.chain_id not in trigger.chain_ids:
            results.append(DryRunResult(event.pk, event.event_type, False, "chain not watched"))
            continue
        if trigger.registries and event.registry not in trigger.registries:
            results.append(DryRunResult(event.pk, event.event_type, False, "registry not watched"))
            continue
        if trigger.event_types and event.event_type not in trigger.event_types:
            results.append(DryRunResult(event.pk, event.event_type, False, "event type not watched"))
            continue
        ctx = EvaluationContext(
            agent=agents.get(event.pk), state=state, now_timestamp=event.block_timestamp.timestamp()
        )
        matched = condition.evaluate(view, ctx)
        if matched:
            condition.fired(view, ctx)
        state.update(ctx.state_updates)
        result = DryRunResult(event.pk, event.event_type, matched)
        if matched:
            context = evaluation_context_build(event=event, agent=agents.get(event.pk), trigger=trigger)
            for action in actions:
                try:
                    payload = payload_build(destination=action.destination, template=action.template, context=context)
                    result.messages.append({"destination": action.destination_id, "payload": payload})
                except Exception as exc:  # a template error is shown, not raised
                    result.messages.append({"destination": action.destination_id, "error": str(exc)})
        results.append(result)
    return results


#
# Test sends
#

_SAMPLE_ARGS: dict[str, dict[str, Any]] = {
    "NewFeedback": {
        "agentId": "1",
        "clientAddress": "0x" + "11" * 20,
        "feedbackIndex": 1,
        "value": "87",
        "valueDecimals": 0,
        "valueNormalized": "87",
        "tag1": "sample",
        "tag2": "",
        "endpoint": "",
        "feedbackURI": "",
        "feedbackHash": "0x" + "00" * 32,
    },
    "ValidationResponse": {
        "validatorAddress": "0x" + "22" * 20,
        "agentId": "1",
        "requestHash": "0x" + "00" * 32,
        "response": "100",
        "responseURI": "",
        "responseHash": "0x" + "00" * 32,
        "tag": "sample",
    },
    "Registered": {"agentId": "1", "agentURI": "ipfs://sample", "owner": "0x" + "33" * 20},
}


def _sample_event(trigger: Trigger) -> ChainEvent:
    """The newest event the trigger watches, or (none indexed yet) an unsaved event
    shaped like one it would see."""
    recent = trigger_watched_events(trigger=trigger, limit=1)
    if recent:
        return recent[0]
    event_type = (trigger.event_types or ["NewFeedback"])[0]
    registry = next((r for r, types in REGISTRY_EVENT_TYPES.items() if event_type in types), Registry.IDENTITY)
    chain_id = (trigger.chain_ids or [1])[0]
    chain = Chain.objects.filter(pk=chain_id).first() or Chain(chain_id=chain_id, name=f"chain {chain_id}")
    return ChainEvent(
        pk=0,
        chain=chain,
        block_number=1,
        block_hash="0x" + "00" * 32,
        block_timestamp=timezone.now(),
        tx_hash="0x" + "00" * 32,
        tx_index=0,
        log_index=0,
        address="0x" + "00" * 20,
        registry=registry,
        event_type=event_type,
        agent_id=1,
        args=_SAMPLE_ARGS.get(event_type, {"agentId": "1"}),
    )


@dataclass
class TestSendResult:
    action: int
    destination: int
    delivery: Delivery | None = None
    error: str = ""


def trigger_test(*, trigger: Trigger) -> list[TestSendResult]:
    """Send one real ``test`` delivery per enabled action, rendered from a sample
    event (the newest the trigger watches, else a made-up one) with the same context
    a match builds — so the receiver sees what a real notification will look like.
    A template that cannot render is reported for its action; the others still go."""
    event = _sample_event(trigger)
    agent = agent_views_for_events([event]).get(event.pk) if event.pk else None
    context = evaluation_context_build(event=event, agent=agent, trigger=trigger)
    results = []
    for action in trigger.actions.select_related("destination").filter(enabled=True).order_by("position", "id"):
        result = TestSendResult(action=action.position, destination=action.destination_id)
        try:
            with transaction.atomic():
                result.delivery = destination_test(
                    destination=action.destination,
                    template=action.template,
                    context=context,
                    trigger_id=trigger.pk,
                )
        except PayloadError as exc:
            result.error = str(exc)
        results.append(result)
    return results


#
# Sweeper
#


def triggers_sweep(*, older_than_seconds: int = 30, horizon_hours: int = 24, limit: int = 5000) -> tuple[list, list]:
    """Events whose evaluation (or retraction) message was lost: (to evaluate, to retract)."""
    now = timezone.now()
    recent = ChainEvent.objects.filter(
        indexed_at__gte=now - timedelta(hours=horizon_hours),
        indexed_at__lte=now - timedelta(seconds=older_than_seconds),
    )
    evaluated = EventEvaluation.objects.filter(phase=EventEvaluation.Phase.INDEXED).values("event_id")
    to_evaluate = list(
        recent.filter(removed=False).exclude(pk__in=evaluated).order_by("pk").values_list("pk", flat=True)[:limit]
    )
    handled = EventEvaluation.objects.filter(phase=EventEvaluation.Phase.REMOVED).values("event_id")
    to_retract = list(
        ChainEvent.objects.filter(
            removed=True,
            removed_at__gte=now - timedelta(hours=horizon_hours),
            removed_at__lte=now - timedelta(seconds=older_than_seconds),
        )
        .exclude(pk__in=handled)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return to_evaluate, to_retract
