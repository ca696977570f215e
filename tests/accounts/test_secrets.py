"""Secrets: encrypted at rest with key rotation, write-only in forms, and never in a page,
a log line, an event or an error of a job run."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from accounts import crypto
from accounts.models import Customer
from jobs import services as job_services
from jobs.choices import JobState
from jobs.models import Endpoint, Event, FileItem, MigrationJob

from .conftest import make_viewer, run_to_end, signed_in
from .urlpaths import all_paths, body_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_key_rotation_reencrypts_everything(settings, capsys):
    old_key = settings.MIGRATOR_FERNET_KEYS[0]
    customer = Customer.objects.create(name="ACME")
    customer.set_directory_bind_password("bind-secret-1")
    customer.save()
    endpoint = job_services.endpoint_create(
        name="e", url="file:///srv/x", customer=customer, secret="endpoint-secret-1"
    )
    new_key = Fernet.generate_key().decode()
    settings.MIGRATOR_FERNET_KEYS = [new_key, old_key]  # new encrypts, old still decrypts
    assert Endpoint.objects.get(pk=endpoint.pk).get_secret() == "endpoint-secret-1"
    call_command("reencrypt_secrets")
    out = capsys.readouterr().out
    assert "jobs.Endpoint.secret_encrypted: 1 re-encrypted" in out
    assert "accounts.Customer.directory_bind_password_encrypted: 1 re-encrypted" in out
    settings.MIGRATOR_FERNET_KEYS = [new_key]  # the old key is gone: everything still opens
    assert Endpoint.objects.get(pk=endpoint.pk).get_secret() == "endpoint-secret-1"
    assert Customer.objects.get(pk=customer.pk).get_directory_bind_password() == "bind-secret-1"
    settings.MIGRATOR_FERNET_KEYS = [old_key]  # and the old key alone no longer does
    with pytest.raises(Exception, match="cannot be decrypted"):
        Endpoint.objects.get(pk=endpoint.pk).get_secret()


def test_reencrypt_stops_on_a_secret_no_key_opens(settings):
    customer = Customer.objects.create(name="ACME")
    job_services.endpoint_create(name="e", url="file:///x", customer=customer, secret="s")
    settings.MIGRATOR_FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(Exception, match="cannot be decrypted"):
        call_command("reencrypt_secrets")


def test_endpoint_and_customer_forms_never_render_the_secret(admin_client):
    customer = Customer.objects.create(name="ACME")
    customer.set_directory_bind_password("bind-Secret-77")
    customer.save()
    endpoint = job_services.endpoint_create(
        name="e", url="file:///srv/x", customer=customer, secret="endpoint-Secret-77"
    )
    for url in (
        f"/admin/jobs/endpoint/{endpoint.pk}/change/",
        f"/admin/accounts/customer/{customer.pk}/change/",
        "/admin/jobs/endpoint/",
    ):
        text = admin_client.get(url).content.decode()
        assert "Secret-77" not in text
        assert endpoint.secret_encrypted not in text
        assert customer.directory_bind_password_encrypted not in text
    # leaving the field empty keeps the stored secret
    admin_client.post(
        f"/admin/jobs/endpoint/{endpoint.pk}/change/",
        {"name": "renamed", "customer": customer.pk, "url": "file:///srv/x"},
    )
    assert Endpoint.objects.get(pk=endpoint.pk).get_secret() == "endpoint-Secret-77"


def job_ids(job: MigrationJob) -> list[int]:
    """The ids a page about this job's run can be asked with (kept few: staff see every
    page, and the walk multiplies them by every URL pattern)."""
    ids = {job.pk, job.customer_id, job.source_id, job.destination_id}
    ids |= set(job.passes.values_list("pk", flat=True))
    ids |= set(FileItem.objects.filter(job=job).values_list("pk", flat=True)[:2])
    ids |= set(Event.objects.filter(job=job).values_list("pk", flat=True)[:2])
    return sorted(ids)


def _smb_job(samba_dc, tmp_path, customer, secret: str, name: str) -> MigrationJob:
    folder = samba_dc.make_folder("data")
    for i in range(3):
        samba_dc.put_file("data", f"{folder}/leak-check/file-{i}.txt", b"payload %d" % i)
    source = job_services.endpoint_create(
        name=f"{name} share", url=samba_dc.smb_url("data", folder), customer=customer, secret=secret
    )
    destination = job_services.endpoint_create(
        name=f"{name} copy", url=(tmp_path / name).as_uri(), customer=customer
    )
    return job_services.job_create(
        customer=customer, name=name, source=source, destination=destination
    )


def test_no_secret_in_any_page_log_line_event_or_error_of_a_job_run(
    samba_dc, tmp_path, caplog, capfd, django_user_model
):
    caplog.set_level(logging.DEBUG)  # every logger, at its most talkative
    good_secret = samba_dc.admin_password
    bad_secret = "Wrong-Secret-Zq81x!"
    customer = Customer.objects.create(name="Leak Check Ltd")
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", "x")
    viewer = make_viewer(django_user_model, "viewer@leak.test", customer)

    good = _smb_job(samba_dc, tmp_path, customer, good_secret, "good-run")
    run_to_end(good, user=staff)
    assert MigrationJob.objects.get(pk=good.pk).state == JobState.COMPLETED
    assert (tmp_path / "good-run" / "leak-check" / "file-2.txt").read_bytes() == b"payload 2"
    bad = _smb_job(samba_dc, tmp_path, customer, bad_secret, "bad-run")
    run_to_end(bad, user=staff)
    bad.refresh_from_db()
    assert bad.state == JobState.FAILED and bad.error  # it says why, in words

    secrets = [good_secret, bad_secret]
    secrets += list(
        Endpoint.objects.exclude(secret_encrypted="").values_list("secret_encrypted", flat=True)
    )
    texts: list[tuple[str, str]] = []
    ints = sorted(set(job_ids(good)) | set(job_ids(bad)))
    paths = sorted(set(all_paths(ints, good)) | set(all_paths(ints, bad)))
    viewer_paths = [p for p in paths if not p.startswith("/admin/")]  # the admin refuses them
    for who, client, walked in (
        ("staff", signed_in(staff), paths),
        ("viewer", signed_in(viewer), viewer_paths),
    ):
        for path in walked:
            response = client.get(path, follow=True)
            assert response.status_code < 500, path
            texts.append((f"{who} {path}", body_of(response)))
    texts += [("log", record.getMessage()) for record in caplog.records]
    captured = capfd.readouterr()
    texts += [("stdout", captured.out), ("stderr", captured.err)]
    texts += [(f"event {e.pk}", f"{e.message} {e.path}") for e in Event.objects.all()]
    texts += [(f"item {i.pk}", i.message) for i in FileItem.objects.all()]
    texts += [(f"job {j.pk}", j.error) for j in MigrationJob.objects.all()]
    assert len(texts) > 200 and any("good-run" in t for _, t in texts)
    leaks = [(where, s[:6]) for where, text in texts for s in secrets if s in text]
    assert leaks == []
    assert crypto.decrypt(Endpoint.objects.get(name="bad-run share").secret_encrypted) == bad_secret
