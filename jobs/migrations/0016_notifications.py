# Notifications (issue 17): webhooks, their delivery log, who is emailed about what; and
# the once-a-minute task that sends webhook retries when due and notices silent agents.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def add_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="migrator: webhook retries and silent agents",
        defaults={
            "func": "jobs.tasks.notifications_due",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        func="jobs.tasks.notifications_due"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_apitoken"),
        ("jobs", "0015_scale_indexes"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Webhook",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(blank=True, max_length=200)),
                (
                    "url",
                    models.CharField(
                        help_text="https://… (plain http only to loopback in development)",
                        max_length=2000,
                        verbose_name="URL",
                    ),
                ),
                ("secret_encrypted", models.TextField(blank=True, editable=False)),
                (
                    "events",
                    models.JSONField(blank=True, default=list, help_text="Empty: every event."),
                ),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "customer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhooks",
                        to="accounts.customer",
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        blank=True,
                        help_text="Empty: every job of the customer.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhooks",
                        to="jobs.migrationjob",
                    ),
                ),
            ],
            options={
                "ordering": ["customer", "id"],
            },
        ),
        migrations.CreateModel(
            name="NotificationPreference",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("events", models.JSONField(blank=True, default=list)),
                ("email", models.BooleanField(default=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "customer",
                    models.ForeignKey(
                        blank=True,
                        help_text="Empty: every customer (staff only).",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.customer",
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        blank=True,
                        help_text="Empty: every job of the customer.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="jobs.migrationjob",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="notification_preferences",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["user", "customer", "job"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "customer", "job"), name="notification_preference_unique"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("event", models.CharField(max_length=40)),
                ("payload", models.JSONField(default=dict)),
                ("attempt", models.PositiveSmallIntegerField(default=1)),
                ("state", models.CharField(default="pending", max_length=10)),
                ("status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("response_excerpt", models.TextField(blank=True)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                ("next_retry_at", models.DateTimeField(blank=True, null=True)),
                (
                    "webhook",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="jobs.webhook",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "webhook deliveries",
                "ordering": ["-id"],
                "indexes": [
                    models.Index(fields=["state", "next_retry_at"], name="delivery_state_retry")
                ],
            },
        ),
        migrations.RunPython(add_schedule, remove_schedule),
    ]
