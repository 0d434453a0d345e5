"""Load the public ERC-8004 deployments, disabled (see indexing/known_deployments.py)."""

from django.db import migrations
from eth_utils import to_checksum_address


def load(apps, schema_editor):
    from indexing.known_deployments import KNOWN_CHAINS, LEGACY_V04_SETS, MAINNET_SET, TESTNET_SET

    Chain = apps.get_model("indexing", "Chain")
    ContractDeployment = apps.get_model("indexing", "ContractDeployment")
    for chain_id, name, is_testnet, confirmations, identity_start, reputation_start in KNOWN_CHAINS:
        chain, created = Chain.objects.get_or_create(
            chain_id=chain_id,
            defaults={
                "name": name,
                "enabled": False,
                "is_testnet": is_testnet,
                "confirmations": confirmations,
                "poll_interval_seconds": 4.0,
            },
        )
        if not created:
            continue
        addresses = TESTNET_SET if is_testnet else MAINNET_SET
        identity = to_checksum_address(addresses["identity"])
        ContractDeployment.objects.create(
            chain=chain, registry="identity", address=identity, start_block=identity_start, label="ERC-8004 v1"
        )
        ContractDeployment.objects.create(
            chain=chain,
            registry="reputation",
            address=to_checksum_address(addresses["reputation"]),
            start_block=reputation_start,
            identity_address=identity,
            label="ERC-8004 v1",
        )
        legacy = LEGACY_V04_SETS.get(chain_id)
        if legacy:
            legacy_identity = to_checksum_address(legacy["identity"])
            for registry, address in legacy.items():
                ContractDeployment.objects.create(
                    chain=chain,
                    registry=registry,
                    address=to_checksum_address(address),
                    abi_version="v0.4",
                    identity_address="" if registry == "identity" else legacy_identity,
                    enabled=False,
                    label="ERC-8004 v0.4 (Oct 2025 testnet)",
                )


def unload(apps, schema_editor):
    from indexing.known_deployments import KNOWN_CHAINS

    Chain = apps.get_model("indexing", "Chain")
    Chain.objects.filter(chain_id__in=[c[0] for c in KNOWN_CHAINS], enabled=False, rpc_endpoints__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("indexing", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
