"""A seeded, realistic ERC-8004 workload for the devnet, and the ground truth it must produce.

Why it exists: the indexer, the read model and the benchmark are checked against *what actually happened*,
and the only way to know that independently of the code under test is to generate the traffic ourselves
and model it as we go. ``Workload`` drives every event type of the five devnet registries through unlocked
anvil accounts and keeps a plain-Python model of the resulting state; ``truth()`` renders that model as
JSON-serialisable data (shape documented in docs/devnet.md).

How it stays correct and fast:

* Determinism: every choice comes from one ``random.Random(seed)``; nothing iterates over a set. Same seed
  on a fresh chain -> same transactions -> same truth.
* Batching: automine is switched off while running, transactions are sent with explicit nonces and gas
  (no estimation round-trips, and transactions that depend on earlier ones in the same block are fine),
  then one block is mined per batch. Automine slows down sharply as state grows; batches do not.
* Ordering: transactions are pipelined on one HTTP connection, which anvil serves in order (a JSON-RPC
  *batch* would not do: anvil runs its calls concurrently and may reorder them); with equal fees anvil
  then mines them in arrival order. The model is updated in that same order, and every flush checks it:
  each receipt's position, status, log count and, for registrations, the minted agentId must be what the
  model predicted, or ``WorkloadError`` is raised (the Workload is then unusable).
* Sharing: the registry may already hold agents (an earlier run, another seed); the next agentId is read
  from the chain at the start of every run. During a run the workload must be the only sender on its
  accounts. ``truth()`` covers the workload's own transactions and agents only.
* Reverts on purpose (self-feedback, a reserved metadata key) are sent with explicit gas, so they are mined
  with status 0 and change nothing but the sender's nonce.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import random
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak
from web3 import Web3

from indexing.devnet.contracts import DevnetDeployment

__all__ = (
    "ANVIL_MNEMONIC",
    "EVENT_NAMES",
    "Workload",
    "WorkloadError",
    "WorkloadSnapshot",
    "workload_run",
)

logger = logging.getLogger("erc8004.indexing.devnet.workload")

# anvil's default mnemonic: its pre-funded accounts, and the keys that sign agent-wallet proofs here.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
# Wallet keys come from this derivation index upwards, away from the node's own accounts, so a wallet is an
# address that only ever signs (as a hardware or smart-account wallet would).
_WALLET_KEY_FIRST_INDEX = 1000
_WALLET_KEY_COUNT = 12

# Every event our five contracts emit during a workload, as named in truth()["event_counts"]. The v0.4-shaped
# events whose topic0 differs from v1 carry an "@v0.4" suffix; the legacy FeedbackRevoked, ResponseAppended and
# ValidationRequest are byte-identical to v1 and are counted under the v1 name.
EVENT_NAMES = (
    "Transfer",
    "Approval",
    "ApprovalForAll",
    "MetadataUpdate",
    "Registered",
    "URIUpdated",
    "MetadataSet",
    "NewFeedback",
    "NewFeedback@v0.4",
    "FeedbackRevoked",
    "ResponseAppended",
    "ValidationRequest",
    "ValidationResponse",
    "ValidationResponse@v0.4",
)

_ZERO32 = b"\x00" * 32
_ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_AGENT_WALLET = "agentWallet"
# Flush a batch at this many transactions (or earlier, see _manual_mining): bigger blocks amortise anvil's
# per-block work (state root), which grows with the state.
_DEFAULT_BATCH_SIZE = 256
# Wallet proofs must not be valid for more than 5 minutes; 150 s leaves room on both sides of the next block.
_WALLET_DEADLINE_SECONDS = 150


class WorkloadError(RuntimeError):
    """The chain did not do what the model predicted (or the node refused a request)."""


#
# The model
#


@dataclass
class _Agent:
    agent_id: int
    owner: str
    uri: str
    wallet: str | None
    approved: str | None = None
    metadata: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Feedback:
    registry: str  # "reputation" | "legacy_reputation"
    agent_id: int
    client: str
    index: int
    value: int
    decimals: int
    tag1: str
    tag2: str
    endpoint: str
    uri: str
    hash: bytes
    revoked: bool = False
    responses: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class _Validation:
    registry: str  # "validation" | "legacy_validation"
    request_hash: bytes
    agent_id: int
    validator: str
    request_uri: str
    response: int | None = None
    response_uri: str = ""
    response_hash: bytes = _ZERO32
    tag: str = ""
    response_count: int = 0


@dataclass
class _Model:
    agents: list[_Agent] = field(default_factory=list)  # the workload's own agents, in mint order
    by_id: dict[int, _Agent] = field(default_factory=dict)
    next_agent_id: int = 0  # what the identity registry mints next (re-read from the chain at every run)
    feedback: list[_Feedback] = field(default_factory=list)
    last_index: dict[tuple[str, int, str], int] = field(default_factory=dict)
    validations: list[_Validation] = field(default_factory=list)
    operators: dict[str, list[str]] = field(default_factory=dict)
    event_counts: Counter[str] = field(default_factory=Counter)
    first_block: int | None = None
    last_block: int | None = None
    ops: int = 0


@dataclass(frozen=True)
class WorkloadSnapshot:
    """What ``Workload.snapshot()`` returns: the node's snapshot id and a copy of the model. Single use:
    anvil forgets a snapshot once reverted to."""

    chain_snapshot_id: str
    model: _Model


@dataclass
class _Tx:
    label: str
    sender: str
    to: str
    data: bytes
    gas: int
    ok: bool = True
    logs: int = 0
    agent_id: int | None = None  # for registrations: the agentId the model expects to be minted
    hash: str = ""


#
# Transport and encoding
#


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _Rpc:
    """JSON-RPC for a generator that sends thousands of calls.

    ``send()`` writes a request on one kept-alive HTTP/1.1 connection without waiting for the answer
    (pipelining); ``drain()`` reads the answers, in order. The server handles one connection's requests one
    after the other, so transactions reach anvil's pool in exactly the order they were sent, while the
    generator builds the next call instead of waiting for each round trip. (A JSON-RPC *batch* would be
    cheaper still, but anvil runs a batch's calls concurrently and may reorder them.) ``call()`` is a plain
    request/response. Non-HTTP providers go through web3, one call at a time.
    """

    def __init__(self, w3: Web3) -> None:
        self._w3 = w3
        self._id = 0
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._outstanding: list[str] = []  # methods sent and not yet read, in order
        self._answers: list[Any] = []  # results read early (by call()) for drain()
        uri = getattr(w3.provider, "endpoint_uri", None)
        parsed = urllib.parse.urlparse(str(uri)) if uri else None
        self._http = parsed is not None and parsed.scheme == "http"
        if self._http:
            assert parsed is not None
            self._address = (parsed.hostname or "127.0.0.1", parsed.port or 80)
            self._head = f"POST {parsed.path or '/'} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"

    def send(self, method: str, params: list[Any]) -> None:
        if not self._http:
            self._answers.append(self._result(method, self._w3.provider.make_request(method, params)))  # type: ignore[arg-type]
            return
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}).encode()
        request = f"{self._head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self._connection().sendall(request + body)
        self._outstanding.append(method)
        if len(self._outstanding) >= 512:  # keep the unread answers well inside the socket buffers
            self._answers.extend(self._read_outstanding())

    def drain(self) -> list[Any]:
        """Results of every ``send()`` since the last drain, in order; raises on the first JSON-RPC error."""
        answers = self._answers + self._read_outstanding()
        self._answers = []
        return answers

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        params = params or []
        if not self._http:
            return self._result(method, self._w3.provider.make_request(method, params))  # type: ignore[arg-type]
        self._answers.extend(self._read_outstanding())
        self.send(method, params)
        return self._read_outstanding()[0]

    def _connection(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=120)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        return self._sock

    def _recv(self) -> None:
        assert self._sock is not None
        # Acknowledge at once: the node's last (small) response segment otherwise waits for our delayed
        # ACK (Nagle on its side), a 40 ms stall at the end of every pipelined burst.
        if _QUICKACK is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            self.close()
            raise WorkloadError("the node closed the connection")
        self._buffer += chunk

    def _read_outstanding(self) -> list[Any]:
        results = []
        while self._outstanding:
            method = self._outstanding.pop(0)
            results.append(self._result(method, json.loads(self._read_response())))
        return results

    def _read_response(self) -> bytes:
        while b"\r\n\r\n" not in self._buffer:
            self._recv()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 "):
            self.close()
            raise WorkloadError(f"bad HTTP response from the node: {lines[0][:100]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            self.close()
            raise WorkloadError("the node answered without Content-Length")
        self._buffer = rest
        while len(self._buffer) < length:
            self._recv()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body

    @staticmethod
    def _result(method: str, response: dict[str, Any]) -> Any:
        if "error" in response:
            raise WorkloadError(f"{method} failed: {response['error']}")
        return response["result"]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""
        self._outstanding.clear()


class _Fn:
    """One contract function: selector + argument types, encoded with eth_abi (no ABI lookup per call)."""

    def __init__(self, signature: str) -> None:
        self.selector = function_signature_to_4byte_selector(signature)
        inner = signature[signature.index("(") + 1 : -1]
        self.types = _split_types(inner)

    def encode(self, *args: Any) -> bytes:
        return self.selector + abi_encode(self.types, list(args))


def _split_types(inner: str) -> list[str]:
    types, depth, start = [], 0, 0
    for i, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            types.append(inner[start:i])
            start = i + 1
    if inner:
        types.append(inner[start:])
    return types


_FN = {
    "register()": _Fn("register()"),
    "register(string)": _Fn("register(string)"),
    "register(string,(string,bytes)[])": _Fn("register(string,(string,bytes)[])"),
    "setAgentURI": _Fn("setAgentURI(uint256,string)"),
    "setMetadata": _Fn("setMetadata(uint256,string,bytes)"),
    "setAgentWallet": _Fn("setAgentWallet(uint256,address,uint256,bytes)"),
    "unsetAgentWallet": _Fn("unsetAgentWallet(uint256)"),
    "ownerOf": _Fn("ownerOf(uint256)"),
    "transferFrom": _Fn("transferFrom(address,address,uint256)"),
    "approve": _Fn("approve(address,uint256)"),
    "setApprovalForAll": _Fn("setApprovalForAll(address,bool)"),
    "giveFeedback": _Fn("giveFeedback(uint256,int128,uint8,string,string,string,string,bytes32)"),
    "revokeFeedback": _Fn("revokeFeedback(uint256,uint64)"),
    "appendResponse": _Fn("appendResponse(uint256,address,uint64,string,bytes32)"),
    "validationRequest": _Fn("validationRequest(address,uint256,string,bytes32)"),
    "validationResponse": _Fn("validationResponse(bytes32,uint8,string,bytes32,string)"),
    "legacyGiveFeedback": _Fn("giveFeedback(uint256,uint8,bytes32,bytes32,string,bytes32,bytes)"),
    "legacyValidationResponse": _Fn("validationResponse(bytes32,uint8,string,bytes32,bytes32)"),
}


def _gas(data: bytes, base: int = 250_000) -> int:
    """A safe gas limit without an eth_estimateGas round-trip: strings in calldata end up in storage and
    logs at ~700 gas/byte, so 1,100 gas/byte plus a base covers every call the generator makes."""
    return base + 1_100 * len(data)


def _bytes32_text(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return raw[:32].ljust(32, b"\x00")


def _decode_bytes32_tag(raw: bytes) -> str:
    """How truth() (and the indexer) read a v0.4 bytes32 tag: trailing NULs stripped, UTF-8 with replacement."""
    return raw.rstrip(b"\x00").decode("utf-8", errors="replace")


def _decimal_str(value: Fraction) -> str:
    """Exact ``value`` rounded half-even to 18 places, as a plain decimal string (no exponent)."""
    scaled = value * 10**18
    quotient, remainder = divmod(scaled.numerator, scaled.denominator)  # floor: remainder in [0, denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and quotient % 2 == 1):
        quotient += 1
    sign = "-" if quotient < 0 else ""
    digits = str(abs(quotient)).rjust(19, "0")
    return f"{sign}{digits[:-18]}.{digits[-18:]}"


#
# Vocabulary for realistic content
#

_ADJECTIVES = ("Swift", "Quiet", "Bright", "Lucid", "Atlas", "Nimble", "Vector", "Cobalt", "Ember", "Orbit")
_NOUNS = ("Trader", "Scout", "Oracle", "Courier", "Analyst", "Curator", "Sentinel", "Broker", "Planner", "Tutor")
_SKILLS = ("summarize", "translate", "swap", "quote", "audit", "route", "forecast", "classify")
_TRUST = ("reputation", "crypto-economic", "tee-attestation")
_TEXT_KEYS = ("category", "version", "pricing", "ens", "did", "x402.endpoint", "mcp.tools", "homepage")
_BINARY_KEYS = ("pubkey", "score", "flags", "operator.hint", "attestation")
_VALIDATION_TAGS = ("", "zkml", "tee", "reexecution", "hard-finality", "soft-finality")
_LEGACY_TAGS = ("", "starred", "uptime", "quality", "latency", "helpful")
_RESPONSE_URIS = ("ipfs://bafy{h}", "https://responses.example.org/{h}.json", "ar://{h}")


class Workload:
    """Seeded traffic generator over a ``DevnetDeployment`` with a model of what it did.

    ``run(ops)`` sends ``ops`` transactions; ``run_for(seconds, rate)`` trickles them for a demo;
    ``run_events(n)`` runs until at least ``n`` events were emitted. ``snapshot()``/``revert(token)`` move the
    chain and the model back together (the random stream keeps going, so what follows a revert differs from
    what was reverted: a real reorg). ``truth()`` is the expected picture after everything mined so far.
    """

    def __init__(
        self,
        w3: Web3,
        deployment: DevnetDeployment,
        *,
        seed: int,
        accounts: list[str] | None = None,
        batch_size: int = _DEFAULT_BATCH_SIZE,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.seed = seed
        self.batch_size = batch_size
        self._rng = random.Random(seed)
        self._rpc = _Rpc(w3)
        self.chain_id = int(self._rpc.call("eth_chainId"), 16)
        if self.chain_id != deployment.chain_id:
            raise WorkloadError(f"node is chain {self.chain_id}, deployment is for {deployment.chain_id}")
        found = accounts if accounts is not None else self._rpc.call("eth_accounts")
        self.accounts = [Web3.to_checksum_address(a) for a in found]
        if len(self.accounts) < 4:
            raise WorkloadError("the workload needs at least 4 unlocked accounts (anvil --accounts N)")
        # Roles overlap on purpose (an owner also reviews other agents), but owners are a minority, as
        # validators are, so most feedback comes from third parties.
        n = len(self.accounts)
        self._owners = self.accounts[1 : max(2, n // 3) + 1]
        self._validators = self.accounts[-max(2, n // 5) :]
        self._wallet_keys = self._derive_wallet_keys()
        self._model = _Model()
        self._pending: list[_Tx] = []
        self._pending_gas = 0
        # Next nonce per sender; re-read from the node at the start of every run, since tests may send
        # transactions from the same accounts in between.
        self._nonces: dict[str, int] = {}
        self._last_timestamp = 0
        self._batch_gas = 24_000_000
        self._batch_start = 0
        self._identity = Web3.to_checksum_address(deployment.identity)
        self._registry_ref = f"eip155:{self.chain_id}:{self._identity}"

    #
    # Public API
    #

    @property
    def ops(self) -> int:
        """Transactions sent so far (including the deliberate reverts), net of reverted snapshots."""
        return self._model.ops

    @property
    def event_total(self) -> int:
        """Events the mined workload transactions emitted so far (the sum of truth()["event_counts"])."""
        return sum(self._model.event_counts.values())

    def run(self, ops: int) -> int:
        """Send and mine ``ops`` transactions; returns the number of events they emitted."""
        before = self.event_total
        with self._manual_mining():
            for _ in range(ops):
                self._step()
            self._flush()
        return self.event_total - before

    def run_events(self, events: int) -> int:
        """Run until at least ``events`` more events were emitted; returns the transactions sent."""
        target = self.event_total + events
        start = self.ops
        with self._manual_mining():
            while self.event_total < target:
                self._step()
            self._flush()
        return self.ops - start

    def run_for(self, seconds: float | None, rate: float, *, stop: threading.Event | None = None) -> int:
        """Trickle about ``rate`` transactions per second, one block per second, for ``seconds`` (None: until
        ``stop`` is set). Returns the transactions sent. Each tick is flushed before ``stop`` is honoured, so
        the model never holds a transaction the chain did not get."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        tick = max(1.0, 1.0 / rate)
        started = time.monotonic()
        sent = 0
        with self._manual_mining():
            while seconds is None or time.monotonic() - started < seconds:
                if stop is not None and stop.is_set():
                    break
                due = int((time.monotonic() - started + tick) * rate) - sent
                for _ in range(max(0, due)):
                    self._step()
                    sent += 1
                self._flush()
                next_tick = started + (int((time.monotonic() - started) / tick) + 1) * tick
                delay = next_tick - time.monotonic()
                if delay > 0:
                    if stop is not None:
                        stop.wait(delay)
                    else:
                        time.sleep(delay)
        return sent

    def snapshot(self) -> WorkloadSnapshot:
        """Snapshot the chain (``evm_snapshot``) and the model together."""
        self._flush()
        snapshot_id = self._rpc.call("evm_snapshot")
        return WorkloadSnapshot(chain_snapshot_id=snapshot_id, model=copy.deepcopy(self._model))

    def revert(self, token: WorkloadSnapshot) -> None:
        """Return chain and model to ``token``. Everything mined since is orphaned: a reorg for an indexer."""
        self._flush()
        if self._rpc.call("evm_revert", [token.chain_snapshot_id]) is not True:
            raise WorkloadError(f"evm_revert({token.chain_snapshot_id}) refused (snapshots are single use)")
        self._model = copy.deepcopy(token.model)

    def truth(self) -> dict[str, Any]:
        """The expected state after everything mined so far, JSON-serialisable (docs/devnet.md)."""
        model = self._model
        by_agent: dict[int, list[_Feedback]] = {}
        for fb in model.feedback:
            if not fb.revoked:
                by_agent.setdefault(fb.agent_id, []).append(fb)
        agents = []
        for agent in sorted(model.agents, key=lambda a: a.agent_id):
            metadata = {key: "0x" + value.hex() for key, value in agent.metadata.items()}
            if agent.wallet is not None:
                metadata[_AGENT_WALLET] = "0x" + bytes.fromhex(agent.wallet[2:]).hex()
            agents.append(
                {
                    "agent_id": agent.agent_id,
                    "owner": agent.owner,
                    "agent_uri": agent.uri,
                    "agent_wallet": agent.wallet,
                    "approved": agent.approved,
                    "metadata": dict(sorted(metadata.items())),
                    "reputation": _reputation(by_agent.get(agent.agent_id, [])),
                }
            )
        return {
            "chain_id": self.chain_id,
            "seed": self.seed,
            "contracts": self.deployment.addresses(),
            "block_range": [model.first_block, model.last_block],
            "event_counts": {name: model.event_counts.get(name, 0) for name in EVENT_NAMES},
            "agents": agents,
            "feedback": [
                {
                    "agent_id": fb.agent_id,
                    "registry": fb.registry,
                    "client": fb.client,
                    "feedback_index": fb.index,
                    "value": str(fb.value),
                    "value_decimals": fb.decimals,
                    "tag1": fb.tag1,
                    "tag2": fb.tag2,
                    "endpoint": fb.endpoint,
                    "feedback_uri": fb.uri,
                    "feedback_hash": "0x" + fb.hash.hex(),
                    "revoked": fb.revoked,
                    "responses": [
                        {"responder": responder, "response_uri": uri, "response_hash": "0x" + digest.hex()}
                        for responder, uri, digest in fb.responses
                    ],
                }
                for fb in model.feedback
            ],
            "validations": [
                {
                    "registry": v.registry,
                    "request_hash": "0x" + v.request_hash.hex(),
                    "agent_id": v.agent_id,
                    "validator": v.validator,
                    "request_uri": v.request_uri,
                    "response": v.response,
                    "response_uri": v.response_uri,
                    "response_hash": "0x" + v.response_hash.hex(),
                    "tag": v.tag,
                    "status": "responded" if v.response_count else "pending",
                    "response_count": v.response_count,
                }
                for v in model.validations
            ],
            "operators": {owner: sorted(ops) for owner, ops in sorted(model.operators.items()) if ops},
        }

    def write_truth(self, path: str | Path) -> Path:
        """Write ``truth()`` as indented JSON; returns the path."""
        target = Path(path)
        target.write_text(json.dumps(self.truth(), indent=2) + "\n")
        return target

    def close(self) -> None:
        self._rpc.close()

    #
    # Mining
    #

    @contextmanager
    def _manual_mining(self) -> Iterator[None]:
        """Automine off for the duration (restored after). A node that already mines on an interval or on
        demand is left in that mode; the generator mines its own blocks either way."""
        automine = bool(self._rpc.call("anvil_getAutomine"))
        if automine:
            self._rpc.call("evm_setAutomine", [False])
        self._nonces.clear()
        self._sync_next_agent_id()
        latest = self._rpc.call("eth_getBlockByNumber", ["latest", False])
        self._last_timestamp = int(latest["timestamp"], 16)
        # The gas limits we set are about twice the gas used: 80% of the block gas limit in limits keeps a
        # block under the 50% EIP-1559 target, so the base fee does not climb block after block.
        self._batch_gas = int(latest["gasLimit"], 16) * 4 // 5
        try:
            yield
        finally:
            if automine:
                self._rpc.call("evm_setAutomine", [True])

    def _queue(self, tx: _Tx) -> None:
        if not self._pending:
            # Where to look for this batch's receipts: a node that also mines on an interval may include
            # them before we mine.
            self._batch_start = int(self._rpc.call("eth_blockNumber"), 16)
        nonce = self._nonces.get(tx.sender)
        if nonce is None:
            nonce = int(self._rpc.call("eth_getTransactionCount", [tx.sender, "pending"]), 16)
        self._nonces[tx.sender] = nonce + 1
        self._rpc.send(
            "eth_sendTransaction",
            [{"from": tx.sender, "to": tx.to, "data": "0x" + tx.data.hex(), "gas": hex(tx.gas), "nonce": hex(nonce)}],
        )
        self._model.ops += 1
        self._pending.append(tx)
        self._pending_gas += tx.gas
        if len(self._pending) >= self.batch_size or self._pending_gas >= self._batch_gas:
            self._flush()

    def _flush(self) -> None:
        """Mine the pending transactions and check every receipt against the model's prediction."""
        if not self._pending:
            return
        pending, self._pending, self._pending_gas = self._pending, [], 0
        hashes = self._rpc.drain()
        if len(hashes) != len(pending):
            raise WorkloadError(f"{len(hashes)} answers for {len(pending)} transactions")
        for tx, tx_hash in zip(pending, hashes, strict=True):
            tx.hash = tx_hash
        wanted = {tx.hash: tx for tx in pending}
        receipts: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        scanned = self._batch_start
        for _ in range(1000):
            head = int(self._rpc.call("eth_blockNumber"), 16)
            if head == scanned:
                self._rpc.call("evm_mine")
                head = int(self._rpc.call("eth_blockNumber"), 16)
            for number in range(scanned + 1, head + 1):
                for receipt in self._rpc.call("eth_getBlockReceipts", [hex(number)]) or []:
                    if receipt["transactionHash"] in wanted:
                        receipts[receipt["transactionHash"]] = receipt
                        order.append(receipt["transactionHash"])
            scanned = head
            if len(receipts) == len(pending):
                break
        else:
            raise WorkloadError(f"{len(pending) - len(receipts)} transactions were never mined")
        if order != [tx.hash for tx in pending]:
            raise WorkloadError("the node mined the workload's transactions out of order")
        blocks = set()
        for tx in pending:
            receipt = receipts[tx.hash]
            status = int(receipt["status"], 16) == 1
            if status != tx.ok or len(receipt["logs"]) != (tx.logs if tx.ok else 0):
                raise WorkloadError(
                    f"{tx.label} from {tx.sender}: expected ok={tx.ok} with {tx.logs} logs, got status "
                    f"{int(status)} with {len(receipt['logs'])} logs (tx {tx.hash})"
                )
            if tx.agent_id is not None and int(receipt["logs"][0]["topics"][3], 16) != tx.agent_id:
                raise WorkloadError(f"{tx.label}: expected agentId {tx.agent_id} (tx {tx.hash})")
            blocks.add(int(receipt["blockNumber"], 16))
        model = self._model
        model.first_block = min(blocks) if model.first_block is None else min(model.first_block, min(blocks))
        model.last_block = max(blocks)
        latest = self._rpc.call("eth_getBlockByNumber", ["latest", False])
        self._last_timestamp = int(latest["timestamp"], 16)

    #
    # Choosing operations
    #

    def _step(self) -> None:
        """Queue one transaction, chosen by weight among the operations that apply right now."""
        if len(self._model.agents) < 4:
            self._op_register()
            return
        ops: tuple[tuple[Callable[[], bool], int], ...] = (
            (self._op_register, 9),
            (self._op_set_agent_uri, 4),
            (self._op_set_metadata, 6),
            (self._op_set_agent_wallet, 3),
            (self._op_unset_agent_wallet, 1),
            (self._op_transfer, 2),
            (self._op_approve, 2),
            (self._op_set_approval_for_all, 1),
            (self._op_give_feedback, 28),
            (self._op_revoke_feedback, 4),
            (self._op_append_response, 10),
            (self._op_validation_request, 7),
            (self._op_validation_response, 8),
            (self._op_legacy_give_feedback, 6),
            (self._op_legacy_revoke_feedback, 1),
            (self._op_legacy_append_response, 2),
            (self._op_legacy_validation_request, 2),
            (self._op_legacy_validation_response, 2),
            (self._op_expected_revert, 1),
        )
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        for _ in range(20):
            if self._rng.choices(funcs, weights)[0]():
                return
        self._op_register()

    def _count(self, *names: str) -> int:
        self._model.event_counts.update(names)
        return len(names)

    def _pick_agent(self) -> _Agent:
        agents = self._model.agents
        # A few agents are popular (most traffic goes to them), the long tail gets the rest.
        if self._rng.random() < 0.5:
            return agents[self._rng.randrange(max(1, len(agents) // 5))]
        return self._rng.choice(agents)

    def _agent(self, agent_id: int) -> _Agent:
        return self._model.by_id[agent_id]

    def _sync_next_agent_id(self) -> None:
        """Learn the next agentId from the chain: the registry may hold agents that are not ours (an earlier
        run, another seed, a test). Ids are dense (no burn), so search for the first id without an owner."""
        low = self._model.next_agent_id  # ids below are known to exist
        if not self._agent_exists(low):
            return
        high = max(1, low * 2)
        while self._agent_exists(high):
            low, high = high, high * 2
        while high - low > 1:  # low exists, high does not
            middle = (low + high) // 2
            low, high = (middle, high) if self._agent_exists(middle) else (low, middle)
        self._model.next_agent_id = high

    def _agent_exists(self, agent_id: int) -> bool:
        data = "0x" + _FN["ownerOf"].encode(agent_id).hex()
        try:
            self._rpc.call("eth_call", [{"to": self._identity, "data": data}, "latest"])
        except WorkloadError:
            return False
        return True

    def _is_authorized(self, agent: _Agent, account: str) -> bool:
        return (
            account == agent.owner or account == agent.approved or account in self._model.operators.get(agent.owner, ())
        )

    def _actor(self, agent: _Agent) -> str:
        """Who acts for an agent: usually its owner, sometimes an operator or the approved address."""
        delegates = list(self._model.operators.get(agent.owner, ()))
        if agent.approved is not None:
            delegates.append(agent.approved)
        if delegates and self._rng.random() < 0.25:
            return self._rng.choice(delegates)
        return agent.owner

    def _outsider(self, agent: _Agent) -> str | None:
        """An account that may review ``agent`` (not its owner, an operator or the approved address)."""
        for _ in range(10):
            account = self._rng.choice(self.accounts)
            if not self._is_authorized(agent, account):
                return account
        return None

    def _hash32(self) -> bytes:
        return keccak(self._rng.randbytes(32))

    def _maybe_hash(self, p_zero: float = 0.2) -> bytes:
        return _ZERO32 if self._rng.random() < p_zero else self._hash32()

    #
    # Content
    #

    def _registration(self, agent_id: int, owner: str, *, legacy: bool) -> dict[str, Any]:
        rng = self._rng
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {agent_id}"
        slug = name.lower().replace(" ", "-")
        services: list[dict[str, Any]] = [
            {"name": "web", "endpoint": f"https://{slug}.agents.example"},
            {
                "name": "A2A",
                "endpoint": f"https://{slug}.agents.example/.well-known/agent-card.json",
                "version": "0.3.0",
            },
            {
                "name": "MCP",
                "endpoint": f"https://{slug}.agents.example/mcp",
                "version": "2025-06-18",
                **({"capabilities": {}} if legacy else {"mcpTools": rng.sample(_SKILLS, 2)}),
            },
        ]
        rng.shuffle(services)
        services = services[: rng.randint(1, 3)]
        if legacy:
            services.append({"name": "agentWallet", "endpoint": f"eip155:{self.chain_id}:{owner}"})
        document: dict[str, Any] = {
            "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
            "name": name,
            "description": f"{name} can {', '.join(rng.sample(_SKILLS, 2))} on request.",
            "image": f"https://img.agents.example/{agent_id}.png",
            ("endpoints" if legacy else "services"): services,
            "x402Support": rng.random() < 0.3,
            "active": rng.random() < 0.9,
            "registrations": [{"agentId": agent_id, "agentRegistry": self._registry_ref}],
        }
        if rng.random() < 0.7:
            document["supportedTrust"] = rng.sample(_TRUST, rng.randint(1, 2))
        return document

    def _agent_uri(self, agent_id: int, owner: str) -> str:
        """An agentURI in one of the forms seen in the wild. Plain (non-base64) data: URIs carry raw JSON
        that contains no '%', so reading it with or without percent-decoding gives the same document."""
        rng = self._rng
        roll = rng.random()
        if roll < 0.40:
            document = self._registration(agent_id, owner, legacy=rng.random() < 0.2)
            encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
            return "data:application/json;base64," + encoded
        if roll < 0.50:
            document = self._registration(agent_id, owner, legacy=False)
            return "data:application/json," + json.dumps(document, separators=(",", ":"))
        if roll < 0.70:
            return f"https://agents.example.com/{agent_id}/registration.json"
        if roll < 0.92:
            return "ipfs://bafkrei" + self._hash32().hex()[:52]
        return ""

    def _metadata_entry(self) -> tuple[str, bytes]:
        """A metadata key/value: text (UTF-8) or binary; never empty (truth() lists non-empty values)."""
        rng = self._rng
        if rng.random() < 0.6:
            key = rng.choice(_TEXT_KEYS)
            value = {
                "category": rng.choice(("defi", "research", "support", "gaming", "infra")),
                "version": f"{rng.randint(0, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
                "pricing": f"{rng.randint(1, 500)} USDC/1k calls",
                "ens": f"{rng.choice(_NOUNS).lower()}{rng.randint(1, 999)}.eth",
                "did": f"did:web:{rng.choice(_NOUNS).lower()}.agents.example",
                "x402.endpoint": f"https://pay.agents.example/{rng.randint(1, 10_000)}",
                "mcp.tools": ",".join(rng.sample(_SKILLS, 3)),
                "homepage": f"https://{rng.choice(_ADJECTIVES).lower()}.example",
            }[key]
            return key, value.encode()
        key = rng.choice(_BINARY_KEYS)
        if key == "pubkey":
            return key, b"\x02" + rng.randbytes(32)
        if key == "score":
            return key, abi_encode(["uint256"], [rng.randint(0, 10**6)])
        if key == "operator.hint":
            return key, bytes.fromhex(rng.choice(self.accounts)[2:])
        return key, rng.randbytes(rng.randint(1, 48)) or b"\x00"

    def _feedback_values(self) -> tuple[int, int, str, str]:
        """(value, valueDecimals, tag1, tag2) following the spec's tag examples, with mixed decimals 0..4,
        negatives and untagged feedback."""
        rng = self._rng
        kinds = ("starred", "uptime", "responseTime", "successRate", "reachable", "tradingYield", "revenues")
        kind = rng.choices((*kinds, "", "latency"), (30, 12, 10, 8, 5, 8, 5, 15, 7))[0]
        if kind == "starred":
            return rng.randint(0, 100), 0, "starred", rng.choice(("", "", "quality", "speed"))
        if kind == "uptime":
            return rng.randint(9000, 10_000), 2, "uptime", rng.choice(("", "30d"))
        if kind == "responseTime":
            return rng.randint(40, 3000), 0, "responseTime", rng.choice(("p50", "p95", ""))
        if kind == "successRate":
            return rng.randint(50, 100), 0, "successRate", ""
        if kind == "reachable":
            return rng.choice((0, 1, 1, 1)), 0, "reachable", ""
        if kind == "tradingYield":
            return rng.randint(-500, 800), 1, "tradingYield", rng.choice(("day", "week", "month", "year"))
        if kind == "revenues":
            decimals = rng.randint(0, 2)
            return rng.randint(0, 100_000) * 10**decimals // 10 ** rng.randint(0, decimals), decimals, "revenues", ""
        if kind == "latency":
            return rng.randint(1, 99_999), rng.choice((3, 4)), "latency", rng.choice(("", "eu", "us"))
        return rng.randint(-100, 100), rng.randint(0, 4), "", ""

    def _feedback_uri(self) -> str:
        roll = self._rng.random()
        if roll < 0.3:
            return ""
        if roll < 0.75:
            return "ipfs://bafkrei" + self._hash32().hex()[:52]
        return f"https://feedback.example.org/{self._hash32().hex()[:16]}.json"

    #
    # Identity operations
    #

    def _op_register(self) -> bool:
        rng = self._rng
        model = self._model
        owner = rng.choice(self._owners)
        agent_id = model.next_agent_id
        model.next_agent_id += 1
        variant = rng.choices(("none", "uri", "entries"), (15, 50, 35))[0]
        uri = "" if variant == "none" else self._agent_uri(agent_id, owner)
        entries: list[tuple[str, bytes]] = []
        if variant == "none":
            data = _FN["register()"].encode()
        elif variant == "uri":
            data = _FN["register(string)"].encode(uri)
        else:
            chosen: dict[str, bytes] = {}
            for _ in range(rng.randint(1, 3)):
                key, value = self._metadata_entry()
                chosen[key] = value  # a repeated key: the last value wins, as on chain
            entries = list(chosen.items())
            data = _FN["register(string,(string,bytes)[])"].encode(uri, entries)
        logs = self._count("Transfer", *(["MetadataUpdate"] if variant != "none" else []), "Registered", "MetadataSet")
        logs += self._count(*["MetadataSet"] * len(entries))
        agent = _Agent(agent_id=agent_id, owner=owner, uri=uri, wallet=owner, metadata=dict(entries))
        model.agents.append(agent)
        model.by_id[agent_id] = agent
        self._queue(_Tx(f"register/{variant}", owner, self._identity, data, _gas(data), logs=logs, agent_id=agent_id))
        return True

    def _op_set_agent_uri(self) -> bool:
        agent = self._pick_agent()
        actor = self._actor(agent)
        uri = self._agent_uri(agent.agent_id, agent.owner)
        data = _FN["setAgentURI"].encode(agent.agent_id, uri)
        agent.uri = uri
        logs = self._count("MetadataUpdate", "URIUpdated")
        self._queue(_Tx("setAgentURI", actor, self._identity, data, _gas(data), logs=logs))
        return True

    def _op_set_metadata(self) -> bool:
        agent = self._pick_agent()
        key, value = self._metadata_entry()
        data = _FN["setMetadata"].encode(agent.agent_id, key, value)
        agent.metadata[key] = value
        logs = self._count("MetadataSet")
        self._queue(_Tx("setMetadata", self._actor(agent), self._identity, data, _gas(data), logs=logs))
        return True

    def _op_set_agent_wallet(self) -> bool:
        agent = self._pick_agent()
        key, wallet = self._rng.choice(self._wallet_keys)
        # anvil stamps blocks with the wall clock (equal timestamps allowed), so the next block's time is
        # about max(last block, now); the deadline sits well inside [that, that + 5 min].
        deadline = max(self._last_timestamp, int(time.time())) + _WALLET_DEADLINE_SECONDS
        signature = Account.sign_typed_data(
            key,
            full_message={
                "types": {
                    "EIP712Domain": [
                        {"name": "name", "type": "string"},
                        {"name": "version", "type": "string"},
                        {"name": "chainId", "type": "uint256"},
                        {"name": "verifyingContract", "type": "address"},
                    ],
                    "AgentWalletSet": [
                        {"name": "agentId", "type": "uint256"},
                        {"name": "newWallet", "type": "address"},
                        {"name": "owner", "type": "address"},
                        {"name": "deadline", "type": "uint256"},
                    ],
                },
                "primaryType": "AgentWalletSet",
                "domain": {
                    "name": "ERC8004IdentityRegistry",
                    "version": "1",
                    "chainId": self.chain_id,
                    "verifyingContract": self._identity,
                },
                "message": {"agentId": agent.agent_id, "newWallet": wallet, "owner": agent.owner, "deadline": deadline},
            },
        ).signature
        data = _FN["setAgentWallet"].encode(agent.agent_id, wallet, deadline, bytes(signature))
        agent.wallet = wallet
        logs = self._count("MetadataSet")
        self._queue(_Tx("setAgentWallet", self._actor(agent), self._identity, data, _gas(data), logs=logs))
        return True

    def _op_unset_agent_wallet(self) -> bool:
        with_wallet = [a for a in self._model.agents if a.wallet is not None]
        if not with_wallet:
            return False
        agent = self._rng.choice(with_wallet)
        data = _FN["unsetAgentWallet"].encode(agent.agent_id)
        agent.wallet = None
        logs = self._count("MetadataSet")
        self._queue(_Tx("unsetAgentWallet", self._actor(agent), self._identity, data, _gas(data), logs=logs))
        return True

    def _op_transfer(self) -> bool:
        agent = self._pick_agent()
        actor = self._actor(agent)
        to = self._rng.choice([a for a in self.accounts if a != agent.owner])
        data = _FN["transferFrom"].encode(agent.owner, to, agent.agent_id)
        agent.owner, agent.wallet, agent.approved = to, None, None  # OZ clears the approval without an event
        logs = self._count("MetadataSet", "Transfer")
        self._queue(_Tx("transferFrom", actor, self._identity, data, _gas(data), logs=logs))
        return True

    def _op_approve(self) -> bool:
        agent = self._pick_agent()
        if agent.approved is not None and self._rng.random() < 0.3:
            approved = None
        else:
            approved = self._rng.choice([a for a in self.accounts if a != agent.owner])
        data = _FN["approve"].encode(approved or _ZERO_ADDRESS, agent.agent_id)
        agent.approved = approved
        logs = self._count("Approval")
        self._queue(_Tx("approve", agent.owner, self._identity, data, _gas(data), logs=logs))
        return True

    def _op_set_approval_for_all(self) -> bool:
        owners = sorted({a.owner for a in self._model.agents})
        owner = self._rng.choice(owners)
        operator = self._rng.choice([a for a in self.accounts if a != owner])
        current = self._model.operators.setdefault(owner, [])
        approved = operator not in current
        if approved:
            current.append(operator)
        else:
            current.remove(operator)
        data = _FN["setApprovalForAll"].encode(operator, approved)
        logs = self._count("ApprovalForAll")
        self._queue(_Tx("setApprovalForAll", owner, self._identity, data, _gas(data), logs=logs))
        return True

    #
    # Reputation operations
    #

    def _next_index(self, registry: str, agent_id: int, client: str) -> int:
        key = (registry, agent_id, client)
        self._model.last_index[key] = self._model.last_index.get(key, 0) + 1
        return self._model.last_index[key]

    def _op_give_feedback(self) -> bool:
        agent = self._pick_agent()
        client = self._outsider(agent)
        if client is None:
            return False
        value, decimals, tag1, tag2 = self._feedback_values()
        rng = self._rng
        endpoint = rng.choice(
            ("", f"https://agents.example.com/{agent.agent_id}/mcp", f"https://agents.example.com/{agent.agent_id}/a2a")
        )
        uri = self._feedback_uri()
        digest = self._maybe_hash(0.5 if uri.startswith("ipfs://") else 0.1) if uri else _ZERO32
        data = _FN["giveFeedback"].encode(agent.agent_id, value, decimals, tag1, tag2, endpoint, uri, digest)
        index = self._next_index("reputation", agent.agent_id, client)
        self._model.feedback.append(
            _Feedback("reputation", agent.agent_id, client, index, value, decimals, tag1, tag2, endpoint, uri, digest)
        )
        logs = self._count("NewFeedback")
        self._queue(_Tx("giveFeedback", client, self.deployment.reputation, data, _gas(data), logs=logs))
        return True

    def _revocable(self, registry: str) -> list[_Feedback]:
        return [fb for fb in self._model.feedback[-400:] if fb.registry == registry and not fb.revoked]

    def _op_revoke_feedback(self, registry: str = "reputation") -> bool:
        candidates = self._revocable(registry)
        if not candidates:
            return False
        fb = self._rng.choice(candidates)
        data = _FN["revokeFeedback"].encode(fb.agent_id, fb.index)
        fb.revoked = True
        logs = self._count("FeedbackRevoked")
        to = getattr(self.deployment, registry)
        self._queue(_Tx(f"revokeFeedback/{registry}", fb.client, to, data, _gas(data), logs=logs))
        return True

    def _op_append_response(self, registry: str = "reputation") -> bool:
        candidates = [fb for fb in self._model.feedback[-400:] if fb.registry == registry]
        if not candidates:
            return False
        fb = self._rng.choice(candidates)
        rng = self._rng
        responder = self._agent(fb.agent_id).owner if rng.random() < 0.6 else rng.choice(self.accounts)
        uri = rng.choice(_RESPONSE_URIS).format(h=self._hash32().hex()[:24])
        digest = self._maybe_hash(0.3)
        data = _FN["appendResponse"].encode(fb.agent_id, fb.client, fb.index, uri, digest)
        fb.responses.append((responder, uri, digest))
        logs = self._count("ResponseAppended")
        to = getattr(self.deployment, registry)
        self._queue(_Tx(f"appendResponse/{registry}", responder, to, data, _gas(data), logs=logs))
        return True

    def _op_legacy_give_feedback(self) -> bool:
        agent = self._pick_agent()
        client = self._outsider(agent)
        if client is None:
            return False
        rng = self._rng
        score = rng.choice((0, 100)) if rng.random() < 0.1 else rng.randint(20, 100)
        raw1 = _bytes32_text(rng.choice(_LEGACY_TAGS))
        # Now and then a tag that is not valid UTF-8: indexers must decode with replacement, not crash.
        raw2 = _bytes32_text(b"\xff\xfebin") if rng.random() < 0.05 else _bytes32_text(rng.choice(_LEGACY_TAGS))
        uri = self._feedback_uri()
        digest = self._maybe_hash(0.3) if uri else _ZERO32
        feedback_auth = rng.randbytes(rng.choice((0, 65, 289)))
        data = _FN["legacyGiveFeedback"].encode(agent.agent_id, score, raw1, raw2, uri, digest, feedback_auth)
        index = self._next_index("legacy_reputation", agent.agent_id, client)
        self._model.feedback.append(
            _Feedback(
                "legacy_reputation",
                agent.agent_id,
                client,
                index,
                score,
                0,
                _decode_bytes32_tag(raw1),
                _decode_bytes32_tag(raw2),
                "",
                uri,
                digest,
            )
        )
        logs = self._count("NewFeedback@v0.4")
        self._queue(_Tx("legacyGiveFeedback", client, self.deployment.legacy_reputation, data, _gas(data), logs=logs))
        return True

    def _op_legacy_revoke_feedback(self) -> bool:
        return self._op_revoke_feedback("legacy_reputation")

    def _op_legacy_append_response(self) -> bool:
        return self._op_append_response("legacy_reputation")

    #
    # Validation operations
    #

    def _op_validation_request(self, registry: str = "validation") -> bool:
        agent = self._pick_agent()
        rng = self._rng
        validator = rng.choice(self._validators)
        request_hash = self._hash32()
        uri = rng.choice(
            (
                f"ipfs://bafkrei{request_hash.hex()[:52]}",
                f"https://validation.example.org/requests/{request_hash.hex()[:20]}",
            )
        )
        data = _FN["validationRequest"].encode(validator, agent.agent_id, uri, request_hash)
        self._model.validations.append(_Validation(registry, request_hash, agent.agent_id, validator, uri))
        logs = self._count("ValidationRequest")
        to = getattr(self.deployment, registry)
        self._queue(_Tx(f"validationRequest/{registry}", self._actor(agent), to, data, _gas(data), logs=logs))
        return True

    def _op_validation_response(self, registry: str = "validation") -> bool:
        recent = [v for v in self._model.validations[-300:] if v.registry == registry]
        if not recent:
            return False
        pending = [v for v in recent if v.response_count == 0]
        rng = self._rng
        validation = rng.choice(pending) if pending and rng.random() < 0.7 else rng.choice(recent)
        response = 0 if rng.random() < 0.12 else rng.randint(1, 100)
        uri = "" if rng.random() < 0.15 else f"https://validation.example.org/responses/{self._hash32().hex()[:20]}"
        digest = self._maybe_hash(0.2)
        tag = rng.choice(_VALIDATION_TAGS)
        if registry == "validation":
            data = _FN["validationResponse"].encode(validation.request_hash, response, uri, digest, tag)
            logs = self._count("ValidationResponse")
        else:
            raw_tag = _bytes32_text(tag)
            tag = _decode_bytes32_tag(raw_tag)
            data = _FN["legacyValidationResponse"].encode(validation.request_hash, response, uri, digest, raw_tag)
            logs = self._count("ValidationResponse@v0.4")
        validation.response, validation.response_uri, validation.response_hash = response, uri, digest
        validation.tag = tag
        validation.response_count += 1
        to = getattr(self.deployment, registry)
        self._queue(_Tx(f"validationResponse/{registry}", validation.validator, to, data, _gas(data), logs=logs))
        return True

    def _op_legacy_validation_request(self) -> bool:
        return self._op_validation_request("legacy_validation")

    def _op_legacy_validation_response(self) -> bool:
        return self._op_validation_response("legacy_validation")

    #
    # Deliberate reverts
    #

    def _op_expected_revert(self) -> bool:
        """Transactions that must revert and leave no trace: self-feedback by the owner or an operator (v1
        and legacy), and a registration that smuggles the reserved agentWallet key into its entries."""
        rng = self._rng
        kind = rng.choice(("self-feedback", "self-feedback-legacy", "reserved-key"))
        agent = self._pick_agent()
        sender = self._actor(agent)
        if kind == "self-feedback":
            data = _FN["giveFeedback"].encode(agent.agent_id, 100, 0, "starred", "", "", "", _ZERO32)
            to = self.deployment.reputation
        elif kind == "self-feedback-legacy":
            starred = _bytes32_text("starred")
            data = _FN["legacyGiveFeedback"].encode(agent.agent_id, 100, starred, _ZERO32, "", _ZERO32, b"")
            to = self.deployment.legacy_reputation
        else:
            entries = [("category", b"defi"), (_AGENT_WALLET, bytes.fromhex(sender[2:]))]
            data = _FN["register(string,(string,bytes)[])"].encode("ipfs://reserved", entries)
            to = self._identity
        self._queue(_Tx(f"revert/{kind}", sender, to, data, _gas(data), ok=False))
        return True

    #
    # Keys
    #

    @staticmethod
    def _derive_wallet_keys() -> list[tuple[bytes, str]]:
        """(private key, address) of the wallets agents point at; derived once (PBKDF2 is slow)."""
        Account.enable_unaudited_hdwallet_features()
        keys = []
        for index in range(_WALLET_KEY_FIRST_INDEX, _WALLET_KEY_FIRST_INDEX + _WALLET_KEY_COUNT):
            account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
            keys.append((bytes(account.key), account.address))
        return keys


def _reputation(feedback: list[_Feedback]) -> dict[str, Any]:
    """Reputation over non-revoked feedback of both registries: exact mean of value / 10**decimals."""

    def summary(items: list[_Feedback]) -> tuple[int, str | None]:
        if not items:
            return 0, None
        total = sum((Fraction(fb.value, 10**fb.decimals) for fb in items), Fraction(0))
        return len(items), _decimal_str(total / len(items))

    count, average = summary(feedback)
    by_tag: dict[str, list[_Feedback]] = {}
    for fb in feedback:
        by_tag.setdefault(fb.tag1, []).append(fb)
    by_tag1 = {}
    for tag in sorted(by_tag):
        tag_count, tag_average = summary(by_tag[tag])
        by_tag1[tag] = {"count": tag_count, "average": tag_average}
    return {
        "count": count,
        "average": average,
        "clients": len({fb.client for fb in feedback}),
        "by_tag1": by_tag1,
    }


def workload_run(
    *, w3: Web3, deployment: DevnetDeployment, seed: int, ops: int, truth_path: str | Path | None = None
) -> Workload:
    """Run ``ops`` seeded transactions and optionally write the truth; returns the Workload for more."""
    workload = Workload(w3, deployment, seed=seed)
    workload.run(ops)
    if truth_path is not None:
        workload.write_truth(truth_path)
    return workload
