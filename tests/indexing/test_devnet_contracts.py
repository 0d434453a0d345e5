"""Deploying the devnet and recording it for the indexer (indexing/devnet/contracts.py and the two
management commands)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from web3 import Web3

from indexing.devnet.anvil import AnvilProcess
from indexing.devnet.contracts import (
    DevnetDeployment,
    devnet_deploy,
    devnet_deployment_get,
    devnet_has_code,
    devnet_register_chain,
)
from indexing.models import Chain, ContractDeployment, Registry, RpcEndpoint
from tests.fixtures.devnet import Devnet

pytestmark = pytest.mark.django_db


def test_deploy_works_with_automine_off(devnet_factory: Callable[..., Devnet]) -> None:
    devnet = devnet_factory()
    w3 = devnet.w3
    w3.provider.make_request("evm_setAutomine", [False])
    deployment = devnet_deploy(w3=w3, deployer=w3.eth.accounts[3])
    assert devnet_has_code(w3=w3, deployment=deployment)
    assert w3.provider.make_request("anvil_getAutomine", [])["result"] is False  # left as it was
    assert deployment.chain_id == 31337
    assert DevnetDeployment.from_dict(json.loads(json.dumps(deployment.to_dict()))) == deployment
    assert all(Web3.is_checksum_address(a) for a in deployment.addresses().values())


def test_register_chain_is_idempotent(devnet: DevnetDeployment) -> None:
    for _ in range(2):
        chain = devnet_register_chain(rpc_url="http://127.0.0.1:1111", chain_id=devnet.chain_id, deployment=devnet)
    assert Chain.objects.filter(chain_id=devnet.chain_id).count() == 1
    assert (chain.confirmations, chain.poll_interval_seconds, chain.is_testnet, chain.name) == (0, 0.5, True, "Devnet")
    assert list(RpcEndpoint.objects.values_list("url", flat=True)) == ["http://127.0.0.1:1111"]
    rows = {row.address: row for row in ContractDeployment.objects.filter(chain=chain)}
    assert len(rows) == 5
    expected = {
        devnet.identity: (Registry.IDENTITY, "v1", ""),
        devnet.reputation: (Registry.REPUTATION, "v1", devnet.identity),
        devnet.validation: (Registry.VALIDATION, "v1", devnet.identity),
        devnet.legacy_reputation: (Registry.REPUTATION, "v0.4", devnet.identity),
        devnet.legacy_validation: (Registry.VALIDATION, "v0.4", devnet.identity),
    }
    for address, (registry, version, identity) in expected.items():
        row = rows[address]
        assert (row.registry, row.abi_version, row.identity_address) == (registry, version, identity)
        assert row.start_block == devnet.block
        assert row.enabled
    assert devnet_deployment_get(chain_id=devnet.chain_id) == devnet

    # anvil restarted on another port, contracts redeployed elsewhere: the old devnet rows are replaced,
    # a row added by hand survives
    ContractDeployment.objects.create(chain=chain, registry=Registry.IDENTITY, address="0x" + "11" * 20, label="mine")
    moved = replace(devnet, reputation="0x" + "22" * 20, block=devnet.block + 7)
    devnet_register_chain(rpc_url="http://127.0.0.1:2222", chain_id=devnet.chain_id, deployment=moved, name="Dev 2")
    assert list(RpcEndpoint.objects.values_list("url", flat=True)) == ["http://127.0.0.1:2222"]
    assert ContractDeployment.objects.filter(chain=chain).count() == 6
    assert not ContractDeployment.objects.filter(address=devnet.reputation).exists()
    assert devnet_deployment_get(chain_id=devnet.chain_id) == moved
    assert Chain.objects.get(chain_id=devnet.chain_id).name == "Dev 2"

    with pytest.raises(ValueError, match="chain"):
        devnet_register_chain(rpc_url="http://x", chain_id=1, deployment=devnet)


def test_deployment_get_is_none_when_incomplete() -> None:
    assert devnet_deployment_get(chain_id=31337) is None


def test_commands_deploy_then_reuse_then_run_workload(devnet_factory: Callable[..., Devnet], tmp_path: Path) -> None:
    devnet = devnet_factory()
    url = devnet.anvil.rpc_url
    out = StringIO()
    call_command("devnet_deploy", rpc_url=url, json=True, stdout=out)
    first = json.loads(out.getvalue())
    assert first["action"] == "deployed"
    out = StringIO()
    call_command("devnet_deploy", rpc_url=url, json=True, stdout=out)
    assert json.loads(out.getvalue()) == {**first, "action": "reused"}
    out = StringIO()
    call_command("devnet_deploy", rpc_url=url, stdout=out)
    assert "identity" in out.getvalue()

    truth_path = tmp_path / "truth.json"
    out = StringIO()
    call_command("devnet_workload", rpc_url=url, seed=11, ops=60, truth=str(truth_path), stdout=out)
    truth = json.loads(truth_path.read_text())
    assert truth["seed"] == 11
    assert truth["contracts"]["identity"] == first["identity"]
    assert "60 transactions" in out.getvalue()

    out = StringIO()
    call_command("devnet_workload", rpc_url=url, seed=12, continuous=True, rate=20, seconds=1.5, stdout=out)
    assert "transactions" in out.getvalue()


def test_workload_command_needs_a_deployment(anvil_factory: Callable[..., AnvilProcess]) -> None:
    anvil = anvil_factory()
    with pytest.raises(CommandError, match="devnet_deploy first"):
        call_command("devnet_workload", rpc_url=anvil.rpc_url, ops=1)
