"""agents/reputation.py: the summaries follow the registries' getSummary arithmetic
exactly (checked against a line-by-line transcription of the Solidity loop)."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.reputation import (
    reputation_report_get,
    reputation_summary_compute,
    validation_summary_compute,
    validation_summary_get,
)

from .factories import address, agent_make, chain_make, feedback_make, validation_make


def solidity_get_summary(feedback: list[tuple[int, int]]) -> tuple[int, int, int]:
    """ReputationRegistry.getSummary's loop over (value, valueDecimals), transcribed."""
    decimal_counts = [0] * 19
    wad_sum = 0
    count = 0
    for value, decimals in feedback:
        wad_sum += value * 10 ** (18 - decimals)
        decimal_counts[decimals] += 1
        count += 1
    if count == 0:
        return 0, 0, 0
    best = 0
    summary_decimals = 0
    for d in range(19):
        if decimal_counts[d] > best:
            best = decimal_counts[d]
            summary_decimals = d

    def sdiv(a: int, b: int) -> int:  # EVM SDIV: truncate toward zero
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q

    avg_wad = sdiv(wad_sum, count)
    return count, sdiv(avg_wad, 10 ** (18 - summary_decimals)), summary_decimals


def groups_of(feedback: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    return [(d, 1, v) for v, d in feedback]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=-(10**38), max_value=10**38), st.integers(min_value=0, max_value=18)),
        max_size=25,
    )
)
def test_compute_equals_the_contract(feedback):
    summary = reputation_summary_compute(groups_of(feedback))
    assert (summary.count, summary.summary_value, summary.summary_value_decimals) == solidity_get_summary(feedback)
    if feedback:
        with localcontext() as ctx:
            ctx.prec = 100
            exact = sum(Decimal(v) / Decimal(10**d) for v, d in feedback) / len(feedback)
            assert abs(summary.average - exact) <= Decimal("1e-18")


def test_worked_examples():
    # Mixed decimals: 87 (0 dp), 9977 (2 dp = 99.77), 5 (0 dp): mode is 0 dp.
    s = reputation_summary_compute(groups_of([(87, 0), (9977, 2), (5, 0)]))
    assert (s.count, s.summary_value, s.summary_value_decimals) == (3, 63, 0)
    assert s.average == Decimal("63.923333333333333333")
    # Tie between 0 and 2 decimals goes to the smaller.
    s = reputation_summary_compute(groups_of([(1, 0), (150, 2)]))
    assert (s.summary_value, s.summary_value_decimals) == (1, 0)
    # Negative averages truncate toward zero: (-32 + -1) / 2 at 1 dp = -1.65 -> -16 (i.e. -1.6).
    s = reputation_summary_compute(groups_of([(-32, 1), (-1, 1)]))
    assert (s.summary_value, s.summary_value_decimals) == (-16, 1)
    assert s.average == Decimal("-1.65")
    assert reputation_summary_compute([]).average is None


def test_validation_compute_floors_like_uint8_division():
    assert validation_summary_compute([(100, 1), (0, 1), (50, 1)]) == (3, 50, Decimal("50"))
    count, floor, exact = validation_summary_compute([(100, 2), (99, 1)])
    assert (count, floor) == (3, 99)
    assert exact == Decimal("99.666666666666666667")
    assert validation_summary_compute([]) == (0, 0, None)


@pytest.mark.django_db
def test_report_overall_per_tag_clients_and_tags():
    chain = chain_make()
    agent = agent_make(chain, 0)
    alice, bob, carol = address(1), address(2), address(3)
    feedback_make(agent, alice, 1, 87, tag1="starred")
    feedback_make(agent, alice, 2, 9977, 2, tag1="uptime", tag2="day")
    feedback_make(agent, bob, 1, 60, tag1="starred")
    feedback_make(agent, bob, 2, 10, tag1="starred", revoked=True)
    feedback_make(agent, carol, 1, 1, tag1="reachable")

    report = reputation_report_get(agent=agent)
    expected = solidity_get_summary([(87, 0), (9977, 2), (60, 0), (1, 0)])
    o = report.overall
    assert (o.count, o.summary_value, o.summary_value_decimals) == expected
    assert [t.tag1 for t in report.by_tag1] == ["starred", "reachable", "uptime"]
    starred = report.by_tag1[0].summary
    assert (starred.count, starred.average, starred.summary_value) == (2, Decimal("73.5"), 73)

    only_alice = reputation_report_get(agent=agent, clients=[alice])
    assert only_alice.overall.count == 2
    # A client listed twice counts twice, as the contract's loop over clientAddresses does.
    twice = reputation_report_get(agent=agent, clients=[alice, alice, bob])
    assert (twice.overall.count, twice.overall.summary_value) == solidity_get_summary(
        [(87, 0), (9977, 2), (87, 0), (9977, 2), (60, 0)]
    )[:2]
    tagged = reputation_report_get(agent=agent, tag1="starred")
    assert tagged.overall.count == 2
    assert [t.tag1 for t in tagged.by_tag1] == ["starred"]
    both = reputation_report_get(agent=agent, tag1="uptime", tag2="day")
    assert (both.overall.summary_value, both.overall.summary_value_decimals) == (9977, 2)
    assert reputation_report_get(agent=agent, clients=[address(99)]).overall.count == 0


@pytest.mark.django_db
def test_validation_summary_semantics():
    chain = chain_make()
    agent = agent_make(chain, 1)
    v1, v2 = address(10), address(11)
    validation_make(agent, v1, response=100, tag="zk")
    validation_make(agent, v1, response=0, tag="tee")  # 0 is a valid response
    validation_make(agent, v2, response=51, tag="zk")
    validation_make(agent, v2)  # pending
    s = validation_summary_get(agent=agent)
    assert (s.count, s.average_response, s.requests, s.pending) == (3, 50, 4, 1)
    assert validation_summary_get(agent=agent, validators=[v1]).count == 2
    zk = validation_summary_get(agent=agent, tag="zk")
    assert (zk.count, zk.average_response, zk.average) == (2, 75, Decimal("75.5"))
    assert validation_summary_get(agent=agent, validators=[v2], tag="zk").average_response == 51
