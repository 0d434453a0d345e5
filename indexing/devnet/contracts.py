"""The devnet's own ERC-8004 registries: committed artifacts, deployment, and the rows that make the indexer
watch them.

Five contracts are deployed: the three v1 registries (contracts 2.0.0 semantics) and two v0.4-shaped legacy
registries that use the same IdentityRegistry, so one devnet exercises both decoders. The artifacts are built
by ``make contracts`` (contracts/build.mjs) and committed, so nothing here needs a compiler.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from eth_abi import encode as abi_encode
from web3 import Web3
from web3.contract import Contract

from indexing.heads import ws_url_derive
from indexing.models import Chain, ContractDeployment, Registry, RpcEndpoint

__all__ = (
    "CONTRACT_NAMES",
    "DEPLOYMENT_ROLES",
    "DevnetDeployment",
    "artifact_load",
    "artifacts_dir",
    "devnet_contract",
    "devnet_deploy",
    "devnet_deployment_get",
    "devnet_has_code",
    "devnet_register_chain",
)

# Deployment role -> (artifact name, registry kind, ABI version of its events).
DEPLOYMENT_ROLES: dict[str, tuple[str, str, str]] = {
    "identity": ("IdentityRegistry", Registry.IDENTITY, ContractDeployment.AbiVersion.V1),
    "reputation": ("ReputationRegistry", Registry.REPUTATION, ContractDeployment.AbiVersion.V1),
    "validation": ("ValidationRegistry", Registry.VALIDATION, ContractDeployment.AbiVersion.V1),
    "legacy_reputation": ("LegacyReputationRegistry", Registry.REPUTATION, ContractDeployment.AbiVersion.V0_4),
    "legacy_validation": ("LegacyValidationRegistry", Registry.VALIDATION, ContractDeployment.AbiVersion.V0_4),
}
CONTRACT_NAMES = tuple(name for name, _, _ in DEPLOYMENT_ROLES.values())

# ContractDeployment.label of each devnet row: how a later run finds (and replaces) what an earlier one wrote.
_LABEL_PREFIX = "devnet "


def artifacts_dir() -> Path:
    return Path(settings.BASE_DIR) / "contracts" / "artifacts"


@cache
def _artifact_cached(name: str) -> dict[str, Any]:
    path = artifacts_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no artifact {path}: run `make contracts`")
    return json.loads(path.read_text())


def artifact_load(*, name: str) -> dict[str, Any]:
    """The committed artifact ``{contractName, abi, bytecode, compiler, sourceSha256}`` of a devnet contract."""
    return _artifact_cached(name)


@dataclass(frozen=True)
class DevnetDeployment:
    """Where the five devnet registries live on one chain (checksummed addresses) and the block of the first
    deployment transaction, which is every row's ``start_block``."""

    chain_id: int
    identity: str
    reputation: str
    validation: str
    legacy_reputation: str
    legacy_validation: str
    block: int

    def addresses(self) -> dict[str, str]:
        """Role -> address, in deployment order."""
        return {role: getattr(self, role) for role in DEPLOYMENT_ROLES}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DevnetDeployment:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def devnet_contract(*, w3: Web3, deployment: DevnetDeployment, role: str) -> Contract:
    """A web3 contract object for one deployed role (``identity``, ``reputation``, ``legacy_validation``...)."""
    name = DEPLOYMENT_ROLES[role][0]
    return w3.eth.contract(address=getattr(deployment, role), abi=artifact_load(name=name)["abi"])


def devnet_has_code(*, w3: Web3, deployment: DevnetDeployment) -> bool:
    """Whether all five addresses hold code on the node (a restarted anvil has none)."""
    return all(len(w3.eth.get_code(address)) > 0 for address in deployment.addresses().values())


def devnet_deploy(*, w3: Web3, deployer: str | None = None) -> DevnetDeployment:
    """Deploy the five registries from ``deployer`` (default: the node's first account, unlocked on anvil).

    Works whether the node automines or not: with automine off each deployment is mined explicitly, so the
    caller's mining mode is left as it was.
    """
    sender = Web3.to_checksum_address(deployer or w3.eth.accounts[0])
    automine = bool(w3.provider.make_request("anvil_getAutomine", []).get("result", True))
    addresses: dict[str, str] = {}
    first_block: int | None = None
    for role, (name, _registry, _version) in DEPLOYMENT_ROLES.items():
        artifact = artifact_load(name=name)
        data = artifact["bytecode"]
        if role != "identity":
            data += abi_encode(["address"], [addresses["identity"]]).hex()
        tx_hash = w3.eth.send_transaction({"from": sender, "data": data})
        if not automine:
            w3.provider.make_request("evm_mine", [])
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise RuntimeError(f"deploying {name} failed: {receipt}")
        addresses[role] = Web3.to_checksum_address(receipt["contractAddress"])
        if first_block is None:
            first_block = receipt["blockNumber"]
    assert first_block is not None
    return DevnetDeployment(chain_id=w3.eth.chain_id, block=first_block, **addresses)


def _label(role: str) -> str:
    return _LABEL_PREFIX + role.replace("_", " ")


@transaction.atomic
def devnet_register_chain(*, rpc_url: str, chain_id: int, deployment: DevnetDeployment, name: str = "Devnet") -> Chain:
    """Create or update the rows that make the indexer watch a devnet: the Chain (tip-following: 0
    confirmations, 0.5 s polls), exactly one RpcEndpoint (an anvil restart changes the port; its ``ws_url``
    is the same port over ws, for the new-heads listener), and one ContractDeployment per role.
    Idempotent; devnet rows of an earlier deployment at other addresses are
    replaced, rows the user added by hand are left alone."""
    if deployment.chain_id != chain_id:
        raise ValueError(f"deployment is for chain {deployment.chain_id}, not {chain_id}")
    chain, _ = Chain.objects.update_or_create(
        chain_id=chain_id,
        defaults={
            "name": name,
            "enabled": True,
            "is_testnet": True,
            "confirmations": 0,
            "poll_interval_seconds": 0.5,
        },
    )
    RpcEndpoint.objects.filter(chain=chain).exclude(url=rpc_url).delete()
    # anvil serves websockets on its http port: the new-heads listener follows it there.
    RpcEndpoint.objects.update_or_create(
        chain=chain, url=rpc_url, defaults={"priority": 0, "enabled": True, "ws_url": ws_url_derive(rpc_url)}
    )
    for role, (_name, registry, abi_version) in DEPLOYMENT_ROLES.items():
        address = getattr(deployment, role)
        label = _label(role)
        ContractDeployment.objects.filter(chain=chain, label=label).exclude(address=address).delete()
        ContractDeployment.objects.update_or_create(
            chain=chain,
            address=address,
            defaults={
                "registry": registry,
                "start_block": deployment.block,
                "abi_version": abi_version,
                "identity_address": "" if role == "identity" else deployment.identity,
                "enabled": True,
                "label": label,
            },
        )
    return chain


def devnet_deployment_get(*, chain_id: int) -> DevnetDeployment | None:
    """The devnet deployment recorded for a chain by ``devnet_register_chain``, or None if incomplete."""
    recorded = ContractDeployment.objects.filter(chain_id=chain_id, label__startswith=_LABEL_PREFIX)
    rows = {row.label: row for row in recorded}
    found: dict[str, str] = {}
    for role in DEPLOYMENT_ROLES:
        row = rows.get(_label(role))
        if row is None:
            return None
        found[role] = row.address
    block = rows[_label("identity")].start_block
    return DevnetDeployment(chain_id=chain_id, block=block, **found)
