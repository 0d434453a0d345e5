"""erc8004/crypto.py: Fernet at rest, key rotation, secrets that do not print themselves."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection
from django.test import override_settings

from erc8004.crypto import (
    EncryptedTextField,
    Secret,
    SecretDecryptionError,
    secret_decrypt,
    secret_encrypt,
    secret_hint,
    secrets_rotate_token,
)


def test_round_trip_with_the_development_key():
    token = secret_encrypt("123456:bot-token-value")
    assert "bot-token" not in token
    assert secret_decrypt(token) == "123456:bot-token-value"


def test_first_key_encrypts_all_keys_decrypt():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(SECRETS_ENCRYPTION_KEYS=[old]):
        token = secret_encrypt("s3cret")
    with override_settings(SECRETS_ENCRYPTION_KEYS=[new, old]):
        assert secret_decrypt(token) == "s3cret"  # old tokens still readable
        rotated = secrets_rotate_token(token)
    with override_settings(SECRETS_ENCRYPTION_KEYS=[new]):
        assert secret_decrypt(rotated) == "s3cret"  # re-encrypted with the new key
        with pytest.raises(SecretDecryptionError):
            secret_decrypt(token)  # the old key is gone


def test_bad_keys_are_a_configuration_error():
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(SECRETS_ENCRYPTION_KEYS=["not-a-key"]), pytest.raises(ImproperlyConfigured):
        secret_encrypt("x")


def test_production_refuses_to_start_without_keys():
    env = {
        "ERC8004_ENV": "production",
        "DJANGO_SECRET_KEY": "a" * 50,
        "JWT_SECRET": "Zq3vN8rT1xLw5pYc0bHk7mJd2sFg9aUe4QiRo6Vt",  # required in production too (issue 5)
        "DATABASE_URL": "sqlite:///:memory:",
        "PATH": "/usr/bin:/bin",
    }
    code = "import erc8004.settings"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SECRETS_ENCRYPTION_KEYS" in result.stderr
    env["SECRETS_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_secret_never_prints_itself():
    secret = Secret("whsec_c3VwZXJzZWNyZXRrZXl2YWx1ZTEyMzQ1Njc4OQ==")
    assert "c3VwZXJ" not in repr(secret)
    assert "c3VwZXJ" not in str(secret)
    assert "c3VwZXJ" not in f"{secret}"
    assert repr(secret) == "Secret('…OQ==')"
    assert secret.reveal().startswith("whsec_")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_hint_hides_short_secrets_entirely():
    assert secret_hint("short") == "…"
    assert secret_hint("a-much-longer-secret-ab12") == "…ab12"
    assert secret_hint("") == ""


@pytest.mark.django_db
def test_encrypted_field_stores_ciphertext():
    from actions.models import Destination
    from erc8004.models import Organization

    org = Organization.objects.create(name="Acme", slug="acme")
    destination = Destination.objects.create(
        organization=org,
        name="hook",
        channel="webhook",
        config={"url": "https://example.com"},
        secret="plain-value-1234",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM actions_destination WHERE id = %s", [destination.pk])
        (stored,) = cursor.fetchone()
    assert "plain-value" not in stored
    assert secret_decrypt(stored) == "plain-value-1234"
    loaded = Destination.objects.get(pk=destination.pk)
    assert isinstance(loaded.secret, Secret)
    assert loaded.secret.reveal() == "plain-value-1234"
    assert loaded.previous_secret is None
    assert "plain-value" not in repr(loaded) + str(loaded.__dict__)


def test_field_is_not_editable_by_default():
    assert EncryptedTextField().editable is False


@pytest.mark.django_db
def test_secrets_reencrypt_command_rotates_to_the_first_key():
    from django.core.management import call_command

    from actions.models import Destination
    from erc8004.models import Organization

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    org = Organization.objects.create(name="Rot", slug="rot")
    with override_settings(SECRETS_ENCRYPTION_KEYS=[old]):
        destination = Destination.objects.create(
            organization=org, name="d", channel="webhook", config={}, secret="rotate-me-please-1234"
        )
    with override_settings(SECRETS_ENCRYPTION_KEYS=[new, old]):
        call_command("secrets_reencrypt", stdout=io.StringIO())
    with override_settings(SECRETS_ENCRYPTION_KEYS=[new]):
        assert Destination.objects.get(pk=destination.pk).secret.reveal() == "rotate-me-please-1234"
