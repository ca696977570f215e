"""Re-encrypt every stored secret under the newest Fernet key.

Key rotation: put a new key first in MIGRATOR_FERNET_KEYS (keep the old ones after it),
restart, run this command, then remove the old keys.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.services import secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the first key of MIGRATOR_FERNET_KEYS."

    def handle(self, *args, **options) -> None:
        counts = secrets_reencrypt()
        for label, n in counts.items():
            self.stdout.write(f"{label}: {n} re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"Done: {sum(counts.values())} secret(s)."))
