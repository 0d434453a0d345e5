"""Re-encrypt every secret column with the first key of SECRETS_ENCRYPTION_KEYS.

Key rotation: put the new key first (keep the old one after it), deploy, run this,
then remove the old key. Finds ``EncryptedTextField`` columns in every installed app
by introspection, so this package imports no app (DESIGN.md).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from erc8004.crypto import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt all stored secrets with the current (first) encryption key."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = [f.name for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            count = 0
            with transaction.atomic():
                for obj in model._default_manager.select_for_update().only("pk", *fields).iterator(chunk_size=500):
                    # Reading decrypted with any key; saving encrypts with the first.
                    obj.save(update_fields=fields)
                    count += 1
            self.stdout.write(f"{model._meta.label}: {count} row(s) re-encrypted ({', '.join(fields)})")
            total += count
        self.stdout.write(self.style.SUCCESS(f"done: {total} row(s)"))
