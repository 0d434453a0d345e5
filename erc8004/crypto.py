"""Secrets encrypted at rest (bot tokens, webhook signing keys, bearer tokens).

* Fernet (AES-128-CBC + HMAC-SHA256, timestamped tokens) through ``MultiFernet``:
  ``settings.SECRETS_ENCRYPTION_KEYS`` is a comma-separated list of Fernet keys;
  the **first encrypts, all decrypt**. Rotating means putting a new key first,
  running ``manage.py secrets_reencrypt`` (re-encrypts every encrypted column
  with the first key) and then dropping the old key.
* Development and tests derive one key from ``SECRET_KEY`` so ``make run`` needs no
  setup; production refuses to start without explicit keys (settings guard).
* ``EncryptedTextField`` stores the Fernet token and hands Python code a
  ``Secret``, never a bare ``str``: its ``repr``/``str`` show only a hint like
  ``…ab12``, so a secret printed in a log line, a traceback, a model ``repr`` or
  an admin page leaks nothing. Code that really needs the value calls
  ``reveal()`` — one greppable word.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.query_utils import DeferredAttribute

__all__ = (
    "EncryptedTextField",
    "Secret",
    "SecretDecryptionError",
    "secret_decrypt",
    "secret_encrypt",
    "secret_hint",
    "secrets_rotate_token",
)


class SecretDecryptionError(Exception):
    """A stored token could not be decrypted with any configured key."""


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        digest = hashlib.sha256(b"erc8004-secrets-v1:" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes; generate one "
            'with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
        ) from exc


def _current() -> MultiFernet:
    keys = tuple(k for k in (getattr(settings, "SECRETS_ENCRYPTION_KEYS", None) or ()) if k.strip())
    return _fernet(keys, settings.SECRET_KEY)


def secret_encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def secret_decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "stored secret cannot be decrypted with SECRETS_ENCRYPTION_KEYS (was a key removed too early?)"
        ) from None


def secrets_rotate_token(token: str) -> str:
    """Re-encrypt a token with the first (current) key."""
    return _current().rotate(token.encode()).decode()


def secret_hint(plaintext: str | None) -> str:
    """What a person may see: the last four characters, only if the secret is long
    enough that they give nothing useful away."""
    if not plaintext:
        return ""
    return "…" + plaintext[-4:] if len(plaintext) >= 16 else "…"


class Secret:
    """A decrypted secret that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def hint(self) -> str:
        return secret_hint(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.hint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not picklable; store the encrypted token instead")


class _SecretAttribute(DeferredAttribute):
    """Assigning a ``str`` stores a ``Secret``: the instance never holds a bare string."""

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = self.field.to_python(value)


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python sees ``Secret | None``.

    Assign a ``str`` or a ``Secret`` (or ``None``/``""`` for no secret). Not
    searchable (Fernet tokens are randomised). Excluded from serialisation by
    design: ``value_to_string`` returns the token, never the plaintext.
    """

    description = "Text encrypted at rest (Fernet)"
    descriptor_class = _SecretAttribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if value is None or value == "":
            return None
        return Secret(secret_decrypt(value))

    def to_python(self, value: Any) -> Secret | None:
        if value is None or value == "":
            return None
        if isinstance(value, Secret):
            return value
        return Secret(str(value))

    def get_prep_value(self, value: Any) -> str | None:
        value = self.to_python(value)
        if value is None or not value.reveal():
            return None
        return secret_encrypt(value.reveal())

    def value_to_string(self, obj: models.Model) -> str:
        raw = self.value_from_object(obj)
        return self.get_prep_value(raw) or ""
