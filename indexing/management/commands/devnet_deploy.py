"""Deploy the devnet registries (unless the recorded ones are still there) and register the chain."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from web3 import Web3

from indexing.devnet.contracts import (
    devnet_deploy,
    devnet_deployment_get,
    devnet_has_code,
    devnet_register_chain,
)
from indexing.models import ChainCursor
from indexing.poller import chain_reset


class Command(BaseCommand):
    help = (
        "Deploy the five devnet ERC-8004 registries to an anvil node (reusing the deployment recorded for "
        "its chain if the addresses still hold code) and create the Chain, RpcEndpoint and ContractDeployment "
        "rows that make the indexer watch them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the node, e.g. http://127.0.0.1:8545")
        parser.add_argument("--name", default="Devnet", help="Chain name to record (default: Devnet)")
        parser.add_argument("--deployer", default=None, help="Unlocked account to deploy from (default: first)")
        parser.add_argument("--json", action="store_true", help="Print the deployment as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        rpc_url = str(options["rpc_url"])
        w3 = Web3(Web3.HTTPProvider(rpc_url))
        if not w3.is_connected():
            raise CommandError(f"no node answers at {rpc_url}")
        chain_id = w3.eth.chain_id
        deployment = devnet_deployment_get(chain_id=chain_id)
        if deployment is not None and devnet_has_code(w3=w3, deployment=deployment):
            action = "reused"
        else:
            deployment = devnet_deploy(w3=w3, deployer=options["deployer"])
            action = "deployed"
            # A fresh deployment on a chain id we indexed before means the old chain is
            # gone (a restarted devnet): forget its history through the reorg path.
            cursor = ChainCursor.objects.filter(chain_id=chain_id).first()
            if cursor is not None and cursor.last_block_number is not None:
                removed = chain_reset(chain_id=chain_id)
                self.stdout.write(f"the previous devnet chain is gone: {removed} indexed events marked removed")
        chain = devnet_register_chain(
            rpc_url=rpc_url, chain_id=chain_id, deployment=deployment, name=str(options["name"])
        )
        if options["json"]:
            self.stdout.write(json.dumps({"action": action, **deployment.to_dict()}, indent=2))
            return
        self.stdout.write(f"{action} on {chain} at block {deployment.block}:")
        for role, address in deployment.addresses().items():
            self.stdout.write(f"  {role:<18} {address}")
