"""Parse an ERC-8004 registration file (what ``agentURI`` points to). Pure: bytes in,
a :class:`Registration` or a :class:`ParseError` out — never an exception.

Shapes accepted (erc8004 notes §2.1):

* the Jan-2026 file: ``name``, ``description``, ``image``, ``active``,
  ``x402Support``, ``supportedTrust``, ``registrations[{agentId, agentRegistry}]`` and
  ``services[{name, endpoint, version?, ...}]``;
* v0.4 files, which call the list ``endpoints`` and advertise the wallet as an
  ``{"name": "agentWallet", "endpoint": "eip155:1:0x…"}`` entry;
* agent0-sdk spellings: ``x402support``, ``supportedTrusts``, and per-service
  ``mcpTools`` / ``mcpPrompts`` / ``mcpResources`` / ``a2aSkills``.

``services`` wins over ``endpoints`` when both are present (agent0 does the same).

Strictness: a field we interpret with the wrong JSON type is an error (a file that
says ``"active": "yes"`` is not telling us the agent is active), and so is anything
that cannot be a registration at all. Text that is merely long is truncated with a
warning rather than rejected, because rejecting a whole file for a long description
would hide everything else the agent published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .jsondoc import MAX_DOCUMENT_BYTES, DocumentError, json_document_load

__all__ = (
    "ParseError",
    "Registration",
    "registration_backlink",
    "registration_from_document",
    "registration_parse",
)

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"

# Bounds on what is copied to the agent row (lists show these); the full document is
# kept separately. Long enough for any honest value, short enough for a list page.
MAX_NAME = 512
MAX_DESCRIPTION = 20_000
MAX_IMAGE = 8192  # an inline data: image bigger than this is dropped from the row, kept in the file
MAX_SERVICES = 256
MAX_REGISTRATIONS = 256
MAX_TRUST_VALUES = 32
MAX_LIST_ITEMS = 1000  # skills, tools, ... per service
MAX_SHORT_TEXT = 200  # service names, versions, trust values, list items
# The copy of the services on the agent row (what lists return) is bounded tighter than
# the parsed file: a hostile file must not make every list page that shows it heavy.
ROW_SERVICES = 32
ROW_LIST_ITEMS = 50
ROW_ENDPOINT = 2048

# Per-service list fields, under the name we expose → every spelling we accept.
_SERVICE_LISTS: dict[str, tuple[str, ...]] = {
    "skills": ("skills", "a2aSkills"),
    "domains": ("domains",),
    "tools": ("tools", "mcpTools"),
    "prompts": ("prompts", "mcpPrompts"),
    "resources": ("resources", "mcpResources"),
}
_SERVICE_KNOWN = {"name", "endpoint", "version"} | {k for keys in _SERVICE_LISTS.values() for k in keys}


@dataclass(frozen=True)
class ParseError:
    """Why a file could not be read as a registration (shown to users as is)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Registration:
    name: str = ""
    description: str = ""
    image: str = ""
    active: bool | None = None
    x402_support: bool | None = None
    supported_trust: list[str] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    agent_wallet: str = ""  # v0.4: the agentWallet endpoint entry (CAIP-10), if any
    type: str = ""
    services_key: str = ""  # "services", "endpoints" or "" — which list the file used
    warnings: list[str] = field(default_factory=list)

    def _has(self, name: str) -> bool:
        return any(s["name"].lower() == name for s in self.services)

    @property
    def has_mcp(self) -> bool:
        return self._has("mcp")

    @property
    def has_a2a(self) -> bool:
        return self._has("a2a")

    @property
    def has_web(self) -> bool:
        return self._has("web")

    @property
    def services_summary(self) -> list[dict[str, Any]]:
        """The services as the agent row keeps them: at most ``ROW_SERVICES`` entries,
        ``ROW_LIST_ITEMS`` items per list, no ``extra`` (the parsed file has it all)."""
        out = []
        for service in self.services[:ROW_SERVICES]:
            row = {k: v for k, v in service.items() if k != "extra"}
            row["endpoint"] = row["endpoint"][:ROW_ENDPOINT]
            for key in _SERVICE_LISTS:
                row[key] = row[key][:ROW_LIST_ITEMS]
            out.append(row)
        return out

    def as_json(self) -> dict[str, Any]:
        """The normalised document (stored as ``parsed`` and served by the API)."""
        return {
            "type": self.type,
            "name": self.name,
            "description": self.description,
            "image": self.image,
            "active": self.active,
            "x402_support": self.x402_support,
            "supported_trust": self.supported_trust,
            "services": self.services,
            "registrations": self.registrations,
            "agent_wallet": self.agent_wallet,
            "services_key": self.services_key,
            "warnings": self.warnings,
        }


class _Invalid(Exception):
    """Internal: a schema violation; becomes a ParseError at the module boundary."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _optional_text(doc: dict[str, Any], key: str, limit: int, warnings: list[str], *, drop: bool = False) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"{key} must be a string, not {_type_name(value)}")
    if len(value) > limit:
        if drop:
            warnings.append(f"{key} is {len(value)} characters; only kept in the raw file (limit {limit})")
            return ""
        warnings.append(f"{key} truncated to {limit} characters (was {len(value)})")
        return value[:limit]
    return value


def _optional_bool(doc: dict[str, Any], *keys: str) -> bool | None:
    for key in keys:
        if key in doc and doc[key] is not None:
            value = doc[key]
            if not isinstance(value, bool):
                raise _Invalid(f"{key} must be true or false, not {_type_name(value)}")
            return value
    return None


def _text_list(value: Any, where: str, *, limit: int, warnings: list[str]) -> list[str]:
    """A list of short strings; objects with a string ``name`` count as that name
    (some writers list ``{"name": "get_weather", ...}`` tools)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"{where} must be an array, not {_type_name(value)}")
    out: list[str] = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            item = item["name"]
        if isinstance(item, str):
            out.append(item[:MAX_SHORT_TEXT])
        else:
            warnings.append(f"{where}: skipped a {_type_name(item)} item")
        if len(out) >= limit:
            warnings.append(f"{where}: only the first {limit} items kept")
            break
    return out


def _version(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(f"{where}.version must be a string, not {_type_name(value)}")
    return str(value)[:MAX_SHORT_TEXT]


def _service(entry: Any, where: str, warnings: list[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _Invalid(f"{where} must be an object, not {_type_name(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _Invalid(f"{where}.name must be a non-empty string")
    endpoint = entry.get("endpoint", "")
    if endpoint is None:
        endpoint = ""
    if not isinstance(endpoint, str):
        raise _Invalid(f"{where}.endpoint must be a string, not {_type_name(endpoint)}")
    service: dict[str, Any] = {
        "name": name.strip()[:MAX_SHORT_TEXT],
        "endpoint": endpoint,
        "version": _version(entry.get("version"), where),
    }
    for exposed, spellings in _SERVICE_LISTS.items():
        items: list[str] = []
        for key in spellings:
            for item in _text_list(entry.get(key), f"{where}.{key}", limit=MAX_LIST_ITEMS, warnings=warnings):
                if item not in items:
                    items.append(item)
        service[exposed] = items
    service["extra"] = {k: v for k, v in entry.items() if k not in _SERVICE_KNOWN}
    return service


def _services(doc: dict[str, Any], warnings: list[str]) -> tuple[list[dict[str, Any]], str]:
    key = "services" if doc.get("services") is not None else "endpoints" if doc.get("endpoints") is not None else ""
    if not key:
        return [], ""
    entries = doc[key]
    if not isinstance(entries, list):
        raise _Invalid(f"{key} must be an array, not {_type_name(entries)}")
    if len(entries) > MAX_SERVICES:
        raise _Invalid(f"{key} has {len(entries)} entries; the limit is {MAX_SERVICES}")
    return [_service(entry, f"{key}[{i}]", warnings) for i, entry in enumerate(entries)], key


def _registrations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    entries = doc.get("registrations")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise _Invalid(f"registrations must be an array, not {_type_name(entries)}")
    if len(entries) > MAX_REGISTRATIONS:
        raise _Invalid(f"registrations has {len(entries)} entries; the limit is {MAX_REGISTRATIONS}")
    out = []
    for i, entry in enumerate(entries):
        where = f"registrations[{i}]"
        if not isinstance(entry, dict):
            raise _Invalid(f"{where} must be an object, not {_type_name(entry)}")
        agent_id = entry.get("agentId")
        if isinstance(agent_id, bool) or not isinstance(agent_id, int | str | type(None)):
            raise _Invalid(f"{where}.agentId must be an integer, not {_type_name(agent_id)}")
        if isinstance(agent_id, str):
            if not agent_id.strip().isdigit():
                raise _Invalid(f"{where}.agentId must be an integer, not {agent_id[:40]!r}")
            agent_id = int(agent_id.strip())
        if isinstance(agent_id, int) and not 0 <= agent_id < 2**256:
            raise _Invalid(f"{where}.agentId is outside uint256")
        registry = entry.get("agentRegistry", "")
        if registry is None:
            registry = ""
        if not isinstance(registry, str):
            raise _Invalid(f"{where}.agentRegistry must be a string, not {_type_name(registry)}")
        # Integers as strings: agent ids are uint256 and JSON clients lose precision past 2^53.
        out.append({"agentId": None if agent_id is None else str(agent_id), "agentRegistry": registry[:MAX_SHORT_TEXT]})
    return out


def _supported_trust(doc: dict[str, Any], warnings: list[str]) -> list[str]:
    for key in ("supportedTrust", "supportedTrusts"):
        if doc.get(key) is not None:
            values = _text_list(doc[key], key, limit=MAX_TRUST_VALUES, warnings=warnings)
            return list(dict.fromkeys(values))
    return []


def registration_from_document(document: dict[str, Any]) -> Registration | ParseError:
    """Interpret an already loaded JSON object (see :func:`registration_parse`)."""
    warnings: list[str] = []
    try:
        doc_type = document.get("type", "")
        if not isinstance(doc_type, str):
            raise _Invalid(f"type must be a string, not {_type_name(doc_type)}")
        services, services_key = _services(document, warnings)
        wallet = next(
            (s["endpoint"] for s in services if s["name"].lower() == "agentwallet" and s["endpoint"]),
            "",
        )
        return Registration(
            name=_optional_text(document, "name", MAX_NAME, warnings),
            description=_optional_text(document, "description", MAX_DESCRIPTION, warnings),
            image=_optional_text(document, "image", MAX_IMAGE, warnings, drop=True),
            active=_optional_bool(document, "active"),
            x402_support=_optional_bool(document, "x402Support", "x402support"),
            supported_trust=_supported_trust(document, warnings),
            services=services,
            registrations=_registrations(document),
            agent_wallet=wallet[:MAX_SHORT_TEXT],
            type=doc_type[:MAX_SHORT_TEXT],
            services_key=services_key,
            warnings=warnings,
        )
    except _Invalid as exc:
        return ParseError(str(exc))


def registration_parse(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Registration | ParseError:
    """Parse the bytes of a registration file."""
    try:
        document = json_document_load(data, max_bytes=max_bytes)
    except DocumentError as exc:
        return ParseError(str(exc))
    return registration_from_document(document)


def registration_backlink(registration: Registration, *, chain_id: int, identity_address: str, agent_id: int) -> bool:
    """Does the file name this agent back (the spec's two-way link between the file and
    the NFT): an entry with this ``agentId`` and ``agentRegistry`` equal to
    ``eip155:{chainId}:{identityRegistry}`` (address compared case-insensitively)?"""
    wanted = f"eip155:{chain_id}:{identity_address}".lower()
    return any(
        r["agentId"] is not None and int(r["agentId"]) == agent_id and r["agentRegistry"].strip().lower() == wanted
        for r in registration.registrations
    )
