"""migrator_run with a folder on a real OpenSSH sshd as the source, as a user runs it: the
host key pinned in the sftp:// URL, the password or key file in MIGRATOR_SFTP_* variables."""

from __future__ import annotations

import html
import os
import re

import pytest
from django.urls import reverse

from jobs import services
from jobs.models import Endpoint
from tests.servers.sftp import SftpServer

from .conftest import accounting, make_tree, setup, tree_of

MTIME_NS = 1_600_000_000_000_000_000  # whole seconds: what SFTP keeps


def test_cli_sftp_to_local_copies_everything_then_nothing(cli, tmp_path, sftp_server: SftpServer):
    share = sftp_server.new_folder("share")
    expected = make_tree(share, files=12)
    os.utime(share / "d0" / "plain.txt", ns=(MTIME_NS, MTIME_NS))
    sftp_server.give(share)
    source = sftp_server.url(share, hostkey=sftp_server.fingerprint)
    dst = tmp_path / "dst"
    env = {"MIGRATOR_SFTP_KEY_FILE": str(sftp_server.key_path)}

    first = cli.run("--source", source, "--destination", dst.as_uri(), "--json", **env)

    assert first.code == 0, first.stderr
    summary = first.json
    assert summary["state"] == "completed"
    assert summary["seen"] == summary["copied"] == len(expected)
    assert summary["bytes_copied"] == sum(len(b) for b in expected.values())
    assert tree_of(dst) == expected  # hostile names too ('#hash?.bin', 'naïve 日本.txt')
    assert os.stat(dst / "d0/plain.txt").st_mtime_ns == MTIME_NS

    again = cli.run("--source", source, "--destination", dst.as_uri(), "--json", **env)
    assert again.code == 0, again.stderr
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_cli_local_to_sftp_then_nothing_again(cli, tmp_path, sftp_server: SftpServer):
    """As a destination: the files land whole, owned by the SSH user, with their second;
    a second run finds them unchanged although SFTP keeps no nanoseconds."""
    src = tmp_path / "src"
    expected = make_tree(src, files=10)
    os.utime(src / "d0" / "plain.txt", ns=(MTIME_NS + 123_456_789, MTIME_NS + 123_456_789))
    target = sftp_server.new_folder("target")
    dest = sftp_server.url(target / "migrated", hostkey=sftp_server.fingerprint)
    env = {"MIGRATOR_SFTP_PASSWORD": sftp_server.password}
    args = ("--source", src.as_uri(), "--destination", dest, "--json")

    first = cli.run(*args, **env)

    assert first.code == 0, first.stderr
    assert first.json["copied"] == len(expected)
    assert tree_of(target / "migrated") == expected
    landed = target / "migrated" / "d0" / "plain.txt"
    assert os.stat(landed).st_mtime_ns == MTIME_NS  # whole seconds
    assert os.stat(landed).st_uid == sftp_server.uid

    again = cli.run(*args, **env)
    assert again.code == 0, again.stderr
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_cli_wrong_password_is_one_clear_line_before_any_work(cli, tmp_path, sftp_server):
    share = sftp_server.new_folder("share")
    (share / "a.txt").write_bytes(b"a")
    sftp_server.give(share)
    env = {"MIGRATOR_SFTP_PASSWORD": "not-the-password"}

    result = cli.run(
        "--source", sftp_server.url(share), "--destination", str(tmp_path / "d"), **env
    )

    assert result.code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot start: source sftp://" in result.stderr
    assert "the password is wrong" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_cli_wrong_host_key_names_both_fingerprints(cli, tmp_path, sftp_server):
    share = sftp_server.new_folder("share")
    (share / "a.txt").write_bytes(b"a")
    sftp_server.give(share)
    pinned = "SHA256:" + "B" * 43

    result = cli.run(
        "--source",
        sftp_server.url(share, hostkey=pinned),
        "--destination",
        str(tmp_path / "d"),
        MIGRATOR_SFTP_PASSWORD=sftp_server.password,
    )

    assert result.code == 2
    assert "host key mismatch" in result.stderr
    assert pinned in result.stderr and sftp_server.fingerprint in result.stderr


@pytest.mark.django_db
def test_admin_test_connection_shows_the_host_key_to_pin(client, django_user_model, sftp_server):
    """Staff see the server's fingerprint with "connection OK", and whether the endpoint
    pins it; a wrong pin is an error naming both keys; the secret is never on the page."""
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Long-1")
    client.force_login(user)
    share = sftp_server.new_folder("admin")
    key = sftp_server.fingerprint
    cases = {
        "Unpinned": sftp_server.url(share),
        "Pinned": sftp_server.url(share, hostkey=key),
        "Impostor": sftp_server.url(share, hostkey="SHA256:" + "C" * 43),
    }
    ids = [
        services.endpoint_create(name=name, url=url, secret=sftp_server.password).pk
        for name, url in cases.items()
    ]

    page = client.post(
        reverse("admin:jobs_endpoint_changelist"),
        {"action": "test_connection", "_selected_action": ids},
        follow=True,
    ).content.decode()

    shown = {html.unescape(text): level for level, text in
             re.findall(r'<li class="(\w+)">(.*?)</li>', page)}  # fmt: skip
    assert shown[f"Unpinned: connection OK (SSH host key {key}, pinned now, on first use)"] == (
        "success"
    )
    assert shown[f"Pinned: connection OK (SSH host key {key}, pinned)"] == "success"
    # trust on first use: the key is in the endpoint's URL from now on
    unpinned = Endpoint.objects.get(pk=ids[0])
    assert unpinned.url == cases["Unpinned"] + f"?hostkey={key}"
    assert Endpoint.objects.get(pk=ids[2]).url == cases["Impostor"]  # a refused key: unchanged
    (impostor,) = [m for m in shown if m.startswith("Impostor: ")]
    assert shown[impostor] == "error"
    assert "host key mismatch" in impostor and key in impostor and "C" * 43 in impostor
    assert sftp_server.password not in page


def test_sftp_source_through_the_agent_with_the_key_in_the_endpoint(
    stack, tmp_path, sftp_server: SftpServer
):
    """The agent gets the sftp:// URL and the endpoint's (encrypted) key from the server
    and copies from the sshd at its site: every file, nothing failed."""
    share = sftp_server.new_folder("agent")
    expected = make_tree(share, files=15, folders=3)
    sftp_server.give(share)
    source = sftp_server.url(share, hostkey=sftp_server.fingerprint)
    job_id, (code,) = setup(stack, source, tmp_path / "copy", secret=sftp_server.private_key)
    assert stack.enroll("agent1", code).returncode == 0
    stack.start_agent("agent1")

    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (len(expected), len(expected), 0, 0)
    assert tree_of(tmp_path / "copy") == expected
