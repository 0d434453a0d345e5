"""Reputation and validation summaries with the registries' own semantics, computed
from the read model so they can be checked against the contracts' view functions.

``ReputationRegistry.getSummary(agentId, clientAddresses, tag1, tag2)``
(erc8004 notes §1.2; the contract loop is reproduced, not approximated):

* revoked feedback is skipped; an empty tag means "any";
* clients are iterated as given — a client listed twice is counted twice, exactly as
  the contract's loop does (our ``clients=None`` means "every client", i.e. the call
  with ``getClients(agentId)``, which has no duplicates);
* every value is scaled to 18 decimals (``value * 10**(18 - valueDecimals)``), summed
  (``wadSum``), integer-divided by the count, then integer-divided by
  ``10**(18 - d)`` where ``d`` is the most frequent ``valueDecimals`` (a tie goes to
  the smaller ``d``). Solidity's ``/`` on ``int256`` truncates toward zero, so does
  :func:`_div_trunc`.

Beside that lossy on-chain figure we report the exact mean of ``value / 10**d``,
rounded half-even to 18 places — the same number the projector stores as
``Agent.feedback_average``.

``ValidationRegistry.getSummary(agentId, validatorAddresses, tag)``: only requests
with a response count (0 is a valid response), an empty validator list or tag means
"any", and ``avgResponse = uint8(total / count)`` (floor).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from django.db.models import Count, Max, Sum

from .models import Agent, Feedback, Validation, text_hash

__all__ = (
    "MAX_DECIMALS",
    "ReputationReport",
    "ReputationSummary",
    "ValidationSummary",
    "reputation_report_get",
    "reputation_summary_compute",
    "validation_summary_compute",
    "validation_summary_get",
)

MAX_DECIMALS = 18
EIGHTEEN_PLACES = Decimal("1e-18")
# Per-tag breakdowns list the most used tags; tags are free text, so one agent can have
# as many as it has feedback — the list stays bounded and says when it was cut.
MAX_TAGS = 50


def _div_trunc(numerator: int, denominator: int) -> int:
    """Integer division rounding toward zero (Solidity), not toward -inf (Python)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


@dataclass(frozen=True)
class ReputationSummary:
    count: int
    average: Decimal | None  # exact mean of value / 10**decimals, 18 places; None when count is 0
    summary_value: int  # getSummary's summaryValue
    summary_value_decimals: int  # getSummary's summaryValueDecimals


@dataclass(frozen=True)
class TagSummary:
    tag1: str
    summary: ReputationSummary


@dataclass(frozen=True)
class ReputationReport:
    overall: ReputationSummary
    by_tag1: list[TagSummary]
    tags_truncated: bool
    clients: list[str] | None
    tag1: str
    tag2: str


def reputation_summary_compute(groups: Iterable[tuple[int, int, int]]) -> ReputationSummary:
    """Summarise ``(value_decimals, count, sum of raw values)`` groups as the contract would.

    A decimals value may appear in several groups (they add up); counts are the
    contract's ``decimalCounts``.
    """
    counts: Counter[int] = Counter()
    wad_sum = 0
    for decimals, count, total in groups:
        if count <= 0:
            continue
        if not 0 <= decimals <= MAX_DECIMALS:
            raise ValueError(f"valueDecimals {decimals} is outside 0..{MAX_DECIMALS}")
        counts[decimals] += count
        wad_sum += int(total) * 10 ** (MAX_DECIMALS - decimals)
    count = sum(counts.values())
    if count == 0:
        return ReputationSummary(count=0, average=None, summary_value=0, summary_value_decimals=0)
    best = 0
    mode = 0
    for decimals in range(MAX_DECIMALS + 1):  # ascending with a strict ">": ties keep the smaller
        if counts[decimals] > best:
            best, mode = counts[decimals], decimals
    avg_wad = _div_trunc(wad_sum, count)
    summary_value = _div_trunc(avg_wad, 10 ** (MAX_DECIMALS - mode))
    with localcontext() as ctx:
        ctx.prec = 120  # wadSum of int128 values x count fits far below this: the division is exact to 18 places
        average = (Decimal(wad_sum) / count / Decimal(10**MAX_DECIMALS)).quantize(
            EIGHTEEN_PLACES, rounding=ROUND_HALF_EVEN
        )
    return ReputationSummary(count=count, average=average, summary_value=summary_value, summary_value_decimals=mode)


def reputation_report_get(
    *, agent: Agent, clients: list[str] | None = None, tag1: str = "", tag2: str = ""
) -> ReputationReport:
    """The agent's summary overall and per tag1, optionally for some clients and tags.

    ``clients`` are checksummed addresses; ``None`` means every client. One grouped
    query over the agent's feedback, whatever its size or the number of clients.
    """
    rows = Feedback.objects.filter(agent=agent, revoked=False)
    if tag1:
        rows = rows.filter(tag1_hash=text_hash(tag1), tag1=tag1)
    if tag2:
        rows = rows.filter(tag2_hash=text_hash(tag2), tag2=tag2)
    group_by = ["tag1_hash", "value_decimals"]
    multiplicity: Counter[str] = Counter()
    if clients is not None:
        multiplicity = Counter(clients)
        rows = rows.filter(client_address__in=list(multiplicity))
        group_by.append("client_address")
    grouped = rows.values(*group_by).annotate(n=Count("id"), total=Sum("value"), tag=Max("tag1")).order_by()
    overall: list[tuple[int, int, int]] = []
    by_tag: dict[str, list[tuple[int, int, int]]] = {}
    names: dict[str, str] = {}
    for row in grouped:
        weight = multiplicity[row["client_address"]] if clients is not None else 1
        group = (row["value_decimals"], row["n"] * weight, int(row["total"]) * weight)
        overall.append(group)
        by_tag.setdefault(row["tag1_hash"], []).append(group)
        names[row["tag1_hash"]] = row["tag"]
    tag_summaries = sorted(
        (TagSummary(tag1=names[h], summary=reputation_summary_compute(groups)) for h, groups in by_tag.items()),
        key=lambda t: (-t.summary.count, t.tag1),
    )
    return ReputationReport(
        overall=reputation_summary_compute(overall),
        by_tag1=tag_summaries[:MAX_TAGS],
        tags_truncated=len(tag_summaries) > MAX_TAGS,
        clients=clients,
        tag1=tag1,
        tag2=tag2,
    )


@dataclass(frozen=True)
class ValidationSummary:
    count: int  # getSummary's count: requests with a response
    average_response: int  # getSummary's avgResponse (floor); 0 when count is 0
    average: Decimal | None  # exact mean of the responses, 18 places
    requests: int  # every request matching the validator filter, answered or not
    pending: int
    validators: list[str] | None = None
    tag: str = ""


def validation_summary_compute(responses: Iterable[tuple[int, int]]) -> tuple[int, int, Decimal | None]:
    """``(response, count)`` pairs → (count, on-chain avgResponse, exact average)."""
    count = total = 0
    for response, n in responses:
        count += n
        total += response * n
    if count == 0:
        return 0, 0, None
    with localcontext() as ctx:
        ctx.prec = 60
        exact = (Decimal(total) / count).quantize(EIGHTEEN_PLACES, rounding=ROUND_HALF_EVEN)
    return count, total // count, exact


def validation_summary_get(*, agent: Agent, validators: list[str] | None = None, tag: str = "") -> ValidationSummary:
    """The agent's validation summary with ``getSummary(agentId, validators, tag)``
    semantics (``validators=None`` or empty: any validator). The tag applies to the
    latest response, as on-chain (responses overwrite); pending requests have none."""
    rows = Validation.objects.filter(agent=agent)
    if validators:
        rows = rows.filter(validator_address__in=set(validators))
    statuses = dict(rows.values_list("status").annotate(n=Count("id")).order_by())
    responded = rows.filter(status=Validation.Status.RESPONDED)
    if tag:
        responded = responded.filter(tag_hash=text_hash(tag), tag=tag)
    pairs = responded.values_list("response").annotate(n=Count("id")).order_by()
    count, floor_average, exact = validation_summary_compute(pairs)
    return ValidationSummary(
        count=count,
        average_response=floor_average,
        average=exact,
        requests=sum(statuses.values()),
        pending=statuses.get(Validation.Status.PENDING, 0),
        validators=validators,
        tag=tag,
    )
