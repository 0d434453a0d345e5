"""The seeded workload: deterministic, and its ground truth is what the chain says (checked through the
contracts' own view functions, independently of the generator's bookkeeping)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from indexing.devnet.contracts import CONTRACT_NAMES, DEPLOYMENT_ROLES, artifact_load, devnet_contract
from indexing.devnet.workload import EVENT_NAMES, Workload, WorkloadError, _decimal_str
from tests.fixtures.devnet import Devnet

ZERO = "0x0000000000000000000000000000000000000000"
ZERO32 = b"\x00" * 32
V04_SUFFIXED = {("LegacyReputationRegistry", "NewFeedback"), ("LegacyValidationRegistry", "ValidationResponse")}


def _topic_names() -> dict[tuple[str, str], str]:
    """(role, topic0) -> the event name used in truth()["event_counts"]."""
    names = {}
    for role, (contract, _registry, _version) in DEPLOYMENT_ROLES.items():
        for entry in artifact_load(name=contract)["abi"]:
            if entry["type"] != "event":
                continue
            signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
            suffix = "@v0.4" if (contract, entry["name"]) in V04_SUFFIXED else ""
            names[(role, "0x" + keccak(text=signature).hex())] = entry["name"] + suffix
    return names


def chain_event_counts(devnet: Devnet, block_range: list[int]) -> Counter[str]:
    """Count the logs of the five contracts in ``block_range`` by event name, from eth_getLogs."""
    names = _topic_names()
    by_address = {address.lower(): role for role, address in devnet.deployment.addresses().items()}
    logs = devnet.w3.eth.get_logs(
        {
            "fromBlock": block_range[0],
            "toBlock": block_range[1],
            "address": list(devnet.deployment.addresses().values()),
        }
    )
    return Counter(names[(by_address[log["address"].lower()], "0x" + log["topics"][0].hex())] for log in logs)


def assert_truth_matches_chain(devnet: Devnet, truth: dict[str, Any]) -> None:
    """Check every fact of ``truth`` against the contracts' view functions and the logs."""
    w3, deployment = devnet.w3, devnet.deployment
    contracts = {role: devnet_contract(w3=w3, deployment=deployment, role=role) for role in DEPLOYMENT_ROLES}
    identity = contracts["identity"].functions
    rep, legacy_rep = contracts["reputation"].functions, contracts["legacy_reputation"].functions
    val, legacy_val = contracts["validation"].functions, contracts["legacy_validation"].functions

    assert truth["chain_id"] == w3.eth.chain_id
    assert truth["contracts"] == deployment.addresses()
    counts = chain_event_counts(devnet, truth["block_range"])
    assert {name: counts.get(name, 0) for name in EVENT_NAMES} == truth["event_counts"]
    assert set(counts) <= set(EVENT_NAMES)

    feedback_by_agent: dict[int, list[dict[str, Any]]] = {}
    for fb in truth["feedback"]:
        feedback_by_agent.setdefault(fb["agent_id"], []).append(fb)

    for agent in truth["agents"]:
        agent_id = agent["agent_id"]
        assert identity.ownerOf(agent_id).call() == agent["owner"]
        assert identity.tokenURI(agent_id).call() == agent["agent_uri"]
        assert identity.getAgentWallet(agent_id).call() == (agent["agent_wallet"] or ZERO)
        assert identity.getApproved(agent_id).call() == (agent["approved"] or ZERO)
        for key, value in agent["metadata"].items():
            assert "0x" + identity.getMetadata(agent_id, key).call().hex() == value, (agent_id, key)
        if agent["agent_wallet"] is None:
            assert "agentWallet" not in agent["metadata"]

        feedback = feedback_by_agent.get(agent_id, [])
        v1 = [fb for fb in feedback if fb["registry"] == "reputation"]
        legacy = [fb for fb in feedback if fb["registry"] == "legacy_reputation"]

        # v1: readAllFeedback (including revoked) holds exactly the stored fields of truth's feedback.
        on_chain = rep.readAllFeedback(agent_id, [], "", "", True).call()
        rows = sorted(zip(*on_chain, strict=True))
        expected = sorted(
            (
                fb["client"],
                fb["feedback_index"],
                int(fb["value"]),
                fb["value_decimals"],
                fb["tag1"],
                fb["tag2"],
                fb["revoked"],
            )
            for fb in v1
        )
        assert rows == expected, agent_id
        for fb in v1:
            responses = rep.getResponseCount(agent_id, fb["client"], fb["feedback_index"], []).call()
            assert responses == len(fb["responses"])

        # v1 getSummary over all clients: exact count; the value is the contract's integer arithmetic in
        # the mode of decimals, so it is within one unit of that precision of the exact mean.
        live_v1 = [fb for fb in v1 if not fb["revoked"]]
        clients = rep.getClients(agent_id).call()
        if clients:
            count, value, decimals = rep.getSummary(agent_id, clients, "", "").call()
            assert count == len(live_v1)
            if live_v1:
                exact = sum(Fraction(int(fb["value"]), 10 ** fb["value_decimals"]) for fb in live_v1) / len(live_v1)
                modes = Counter(fb["value_decimals"] for fb in live_v1)
                mode = min(d for d, n in modes.items() if n == max(modes.values()))
                assert decimals == mode
                assert abs(Fraction(value, 10**decimals) - exact) < Fraction(1, 10**decimals)

        # legacy: per-client indexes and stored fields, then the v0.4 integer summary.
        for fb in legacy:
            score, tag1, tag2, revoked = legacy_rep.readFeedback(agent_id, fb["client"], fb["feedback_index"]).call()
            assert (score, revoked) == (int(fb["value"]), fb["revoked"])
            assert tag1.rstrip(b"\x00").decode("utf-8", "replace") == fb["tag1"]
            assert tag2.rstrip(b"\x00").decode("utf-8", "replace") == fb["tag2"]
            assert legacy_rep.getResponseCount(agent_id, fb["client"], fb["feedback_index"]).call() == len(
                fb["responses"]
            )
        live_legacy = [int(fb["value"]) for fb in legacy if not fb["revoked"]]
        assert legacy_rep.getSummary(agent_id, [], ZERO32, ZERO32).call() == [
            len(live_legacy),
            sum(live_legacy) // len(live_legacy) if live_legacy else 0,
        ]

        # truth's reputation block is computed from truth's feedback list (both registries).
        live = [fb for fb in feedback if not fb["revoked"]]
        assert agent["reputation"]["count"] == len(live)
        assert agent["reputation"]["clients"] == len({fb["client"] for fb in live})
        if live:
            mean = sum(Decimal(fb["value"]).scaleb(-fb["value_decimals"]) for fb in live) / len(live)
            assert abs(Decimal(agent["reputation"]["average"]) - mean) < Decimal("1e-17")
        else:
            assert agent["reputation"]["average"] is None
        assert sum(t["count"] for t in agent["reputation"]["by_tag1"].values()) == len(live)

    for v in truth["validations"]:
        contract = val if v["registry"] == "validation" else legacy_val
        validator, agent_id, response, response_hash, tag, _ = contract.getValidationStatus(
            bytes.fromhex(v["request_hash"][2:])
        ).call()
        assert (validator, agent_id) == (v["validator"], v["agent_id"])
        assert response == (v["response"] or 0)
        assert "0x" + response_hash.hex() == v["response_hash"]
        if isinstance(tag, bytes):
            tag = tag.rstrip(b"\x00").decode("utf-8", "replace")
        assert tag == v["tag"]
        assert v["status"] == ("responded" if v["response_count"] else "pending")
        assert (v["response"] is None) == (v["response_count"] == 0)

    for agent in truth["agents"]:
        for registry, contract, any_tag in (("validation", val, ""), ("legacy_validation", legacy_val, ZERO32)):
            answered = [
                v["response"]
                for v in truth["validations"]
                if v["registry"] == registry and v["agent_id"] == agent["agent_id"] and v["response_count"]
            ]
            summary = contract.getSummary(agent["agent_id"], [], any_tag).call()
            assert summary == [len(answered), sum(answered) // len(answered) if answered else 0]

    for owner, operators in truth["operators"].items():
        for operator in operators:
            assert identity.isApprovedForAll(owner, operator).call()


@pytest.fixture
def devnet_small(devnet_factory: Callable[..., Devnet]) -> Devnet:
    return devnet_factory()


def test_same_seed_same_truth(devnet_factory: Callable[..., Devnet]) -> None:
    first, second = devnet_factory(), devnet_factory()
    a = Workload(first.w3, first.deployment, seed=7)
    b = Workload(second.w3, second.deployment, seed=7)
    a.run(150)
    b.run(150)
    assert a.truth() == b.truth()
    json.dumps(a.truth())  # serialisable as is
    other = Workload(second.w3, second.deployment, seed=8)  # a second run on a chain that has agents
    other.run(20)
    assert other.truth()["agents"][0]["agent_id"] == len(a.truth()["agents"])
    assert other.truth()["feedback"] != a.truth()["feedback"][: len(other.truth()["feedback"])]


def test_truth_matches_the_chain(devnet_small: Devnet, tmp_path: Path) -> None:
    workload = Workload(devnet_small.w3, devnet_small.deployment, seed=42)
    events = workload.run(400)
    truth = workload.truth()
    assert events == sum(truth["event_counts"].values()) == workload.event_total
    # every event type is exercised, agentId 0 exists, reverts happened and left no trace
    assert all(truth["event_counts"][name] > 0 for name in EVENT_NAMES), truth["event_counts"]
    assert truth["agents"][0]["agent_id"] == 0
    assert any(fb["revoked"] and fb["responses"] for fb in truth["feedback"])
    assert any(v["response"] == 0 for v in truth["validations"])
    assert any(v["response_count"] > 1 for v in truth["validations"])
    assert {fb["value_decimals"] for fb in truth["feedback"]} >= {0, 1, 2, 3, 4}
    assert any(int(fb["value"]) < 0 for fb in truth["feedback"])
    uris = [a["agent_uri"] for a in truth["agents"]]
    for prefix in ("data:application/json;base64,", "data:application/json,", "https://", "ipfs://"):
        assert any(u.startswith(prefix) for u in uris), prefix
    assert "" in uris
    assert_truth_matches_chain(devnet_small, truth)
    path = workload.write_truth(tmp_path / "truth.json")
    assert json.loads(path.read_text()) == truth


def test_snapshot_and_revert_give_a_plus_c(devnet_small: Devnet) -> None:
    workload = Workload(devnet_small.w3, devnet_small.deployment, seed=3)
    workload.run(120)
    truth_a = workload.truth()
    token = workload.snapshot()
    workload.run(80)
    truth_ab = workload.truth()
    workload.revert(token)
    assert workload.truth() == truth_a
    assert devnet_small.w3.eth.block_number == truth_a["block_range"][1]
    workload.run(80)
    truth_ac = workload.truth()
    assert truth_ac != truth_ab  # C is new traffic, not a replay of B
    # A survives, B is gone: nothing B created (a fresh random hash) is in A + C
    assert {a["agent_id"] for a in truth_a["agents"]} <= {a["agent_id"] for a in truth_ac["agents"]}
    assert all(truth_ac["event_counts"][name] >= n for name, n in truth_a["event_counts"].items())
    hashes = lambda truth: {fb["feedback_hash"] for fb in truth["feedback"]} - {"0x" + "00" * 32}  # noqa: E731
    assert hashes(truth_ab) - hashes(truth_a)
    assert not (hashes(truth_ab) - hashes(truth_a)) & hashes(truth_ac)
    assert truth_ac["block_range"][0] == truth_a["block_range"][0]
    assert_truth_matches_chain(devnet_small, truth_ac)
    with pytest.raises(WorkloadError):
        workload.revert(token)  # anvil snapshots are single use


def test_workload_restores_automine_and_tolerates_foreign_transactions(devnet_small: Devnet) -> None:
    w3 = devnet_small.w3
    workload = Workload(w3, devnet_small.deployment, seed=5)
    workload.run(30)
    assert w3.provider.make_request("anvil_getAutomine", [])["result"] is True
    # someone else uses the same accounts between runs: nonces are re-read
    identity = devnet_contract(w3=w3, deployment=devnet_small.deployment, role="identity")
    for account in w3.eth.accounts[:8]:
        identity.functions.register("ipfs://foreign").transact({"from": account})
    workload.run(30)
    truth = workload.truth()
    assert workload.ops == 60
    # the foreign agents took ids in between; the workload's own agents are exactly what the chain says
    ids = [agent["agent_id"] for agent in truth["agents"]]
    assert len(ids) < ids[-1] + 1
    for agent in truth["agents"]:
        assert identity.functions.ownerOf(agent["agent_id"]).call() == agent["owner"]
        assert identity.functions.tokenURI(agent["agent_id"]).call() == agent["agent_uri"]


def test_decimal_formatting_rounds_half_even() -> None:
    assert _decimal_str(Fraction(87)) == "87.000000000000000000"
    assert _decimal_str(Fraction(-32, 10)) == "-3.200000000000000000"
    assert _decimal_str(Fraction(0)) == "0.000000000000000000"
    assert _decimal_str(Fraction(2, 3)) == "0.666666666666666667"
    assert _decimal_str(Fraction(-2, 3)) == "-0.666666666666666667"
    assert _decimal_str(Fraction(5, 10**19)) == "0.000000000000000000"  # tie -> even (0)
    assert _decimal_str(Fraction(15, 10**19)) == "0.000000000000000002"  # tie -> even (2)
    assert _decimal_str(Fraction(-15, 10**19)) == "-0.000000000000000002"
    assert _decimal_str(Fraction(10**38)) == "1" + "0" * 38 + "." + "0" * 18


def test_contract_names_cover_every_role() -> None:
    assert {name for name, _, _ in DEPLOYMENT_ROLES.values()} == set(CONTRACT_NAMES)


def test_workload_on_an_interval_mining_chain(devnet_factory: Callable[..., Devnet]) -> None:
    """The demo chain mines every second on its own; the workload's blocks and anvil's interleave."""
    devnet = devnet_factory(block_time=0.5)
    workload = Workload(devnet.w3, devnet.deployment, seed=9, batch_size=16)
    sent = workload.run_for(1.6, 40)
    assert sent >= 40
    assert devnet.w3.provider.make_request("anvil_getAutomine", [])["result"] is False  # mode left alone
    assert_truth_matches_chain(devnet, workload.truth())


def test_run_for_stops_cleanly_when_asked(devnet_small: Devnet) -> None:
    """What Ctrl-C does in `devnet_workload --continuous`: the tick in flight is mined, the truth is exact."""
    workload = Workload(devnet_small.w3, devnet_small.deployment, seed=13)
    stop = threading.Event()
    threading.Timer(1.2, stop.set).start()
    started = time.monotonic()
    sent = workload.run_for(None, 25, stop=stop)
    assert time.monotonic() - started < 5
    assert sent == workload.ops > 0
    assert_truth_matches_chain(devnet_small, workload.truth())
