"""Set up the demo: a superuser, a customer, a sample source folder and a draft job."""

from __future__ import annotations

import os
import random
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Customer
from jobs import services
from jobs.models import MigrationJob

AWKWARD = [
    "Quarterly report, final (v2).txt",
    "=SUM(A1+A2).csv",
    "naïve café résumé.txt",
    "日本語のファイル.txt",
    "spaces  in  name .txt",
    "hash#and?question.txt",
    "quote\"and'apostrophe.txt",
    "-leading-dash.txt",
]


def make_demo_tree(root: Path, files: int = 300, seed: int = 7) -> int:
    """A few hundred small files in nested folders, a few with awkward names."""
    rng = random.Random(seed)
    names = ("Finance/2025", "Finance/2026", "HR/Policies", "Projects/Alpha/docs",
             "Projects/Beta", "Shared/Templates", "Empty folder")  # fmt: skip
    folders = [root / d for d in names]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    made = 0
    for i in range(files - len(AWKWARD)):
        folder = folders[i % (len(folders) - 1)]
        path = folder / f"document-{i:04d}.txt"
        path.write_bytes(rng.randbytes(rng.randint(200, 20_000)))
        made += 1
    for name in AWKWARD:
        (root / "Shared" / name).write_text(f"sample file named {name}\n", encoding="utf-8")
        made += 1
    return made


class Command(BaseCommand):
    help = "Create the demo superuser, customer, sample files and a demo job (idempotent)."

    def handle(self, *args, **opts) -> None:
        User = get_user_model()
        password = os.environ.get("MIGRATOR_DEMO_PASSWORD", "migrator-demo")
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.test", password)
        customer, _ = Customer.objects.get_or_create(name="Demo Customer")
        base = Path(settings.BASE_DIR) / "demo-data"
        source_dir, dest_dir = base / "source", base / "destination"
        if not source_dir.exists():
            count = make_demo_tree(source_dir)
            self.stdout.write(f"Demo source: {count} files in {source_dir}")
        dest_dir.mkdir(parents=True, exist_ok=True)
        if not MigrationJob.objects.filter(name="Demo migration").exists():
            source = services.endpoint_get_or_create(url=source_dir.as_uri(), customer=customer)
            destination = services.endpoint_get_or_create(url=dest_dir.as_uri(), customer=customer)
            services.job_create(
                customer=customer, name="Demo migration", source=source, destination=destination
            )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo ready. Log in at http://127.0.0.1:8000/admin/ as "
                f"user 'admin', password '{password}'. Open Migration jobs, tick "
                "'Demo migration', choose 'Start selected jobs'."
            )
        )
