"""migrator_run with an Azure container (Azurite) as source and as destination, as a user
runs it: the endpoint in the azure:// URL, the account key in AZURE_STORAGE_KEY."""

from __future__ import annotations

import hashlib
import os

from tests.servers.azure import AzureServer

from .conftest import accounting, make_tree, setup, tree_of

MTIME_NS = 1_600_000_000_123_456_789


def test_cli_azure_to_local_copies_everything_then_nothing(
    cli, tmp_path, azure_server: AzureServer
):
    name = azure_server.make_container()
    container = azure_server.container(name)
    expected = make_tree(tmp_path / "made", files=12)
    for rel, data in expected.items():
        metadata = {"mtime": "2020-09-13T12:26:40.123456789Z"} if rel.endswith("plain.txt") else {}
        container.upload_blob(f"share/{rel}", data, metadata=metadata)
    container.upload_blob("elsewhere.txt", b"not under the prefix")
    source, dst = azure_server.azure_url(name, "share"), tmp_path / "dst"

    args = ("--source", source, "--destination", dst.as_uri(), "--json")
    first = cli.run(*args, **azure_server.env())

    assert first.code == 0, first.stderr
    summary = first.json
    assert summary["state"] == "completed"
    assert summary["seen"] == summary["copied"] == len(expected)
    assert summary["bytes_copied"] == sum(len(b) for b in expected.values())
    assert tree_of(dst) == expected  # the prefix's contents, nothing from beside it
    assert os.stat(dst / "d0/plain.txt").st_mtime_ns == MTIME_NS

    again = cli.run(*args, **azure_server.env())
    assert again.code == 0, again.stderr
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_cli_local_to_azure_keeps_md5_and_mtime(cli, tmp_path, azure_server: AzureServer):
    name = azure_server.make_container()
    src = tmp_path / "src"
    expected = make_tree(src, files=8)
    big = os.urandom(9 << 20)  # staged in blocks, then committed
    (src / "big.bin").write_bytes(big)
    expected["big.bin"] = big
    os.utime(src / "big.bin", ns=(MTIME_NS, MTIME_NS))
    dest = azure_server.azure_url(name, "migrated")

    # no --profile: an Azure destination keeps names as they are
    args = ("--source", src.as_uri(), "--destination", dest, "--json")
    first = cli.run(*args, **azure_server.env())

    assert first.code == 0, first.stderr
    assert first.json["copied"] == len(expected)
    container = azure_server.container(name)
    for rel, data in expected.items():
        blob = container.get_blob_client(f"migrated/{rel}")
        assert blob.download_blob().readall() == data
        properties = blob.get_blob_properties()
        assert properties.size == len(data)
        assert bytes(properties.content_settings.content_md5) == hashlib.md5(data).digest()
        assert "mtime" in properties.metadata
    big_props = container.get_blob_client("migrated/big.bin").get_blob_properties()
    assert big_props.metadata["mtime"] == "2020-09-13T12:26:40.123456789Z"

    again = cli.run(*args, **azure_server.env())
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_cli_wrong_key_is_one_clear_line_before_any_work(cli, tmp_path, azure_server: AzureServer):
    name = azure_server.make_container()
    azure_server.container(name).upload_blob("share/a.txt", b"a")
    wrong = "bm90LXRoZS1rZXktbm90LXRoZS1rZXktbm90LXRoZS1rZXk="

    result = cli.run(
        "--source",
        azure_server.azure_url(name, "share"),
        "--destination",
        str(tmp_path / "d"),
        AZURE_STORAGE_KEY=wrong,
    )

    assert result.code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot start: source azure://" in result.stderr
    assert "wrong account key" in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_azure_source_through_the_agent_with_the_key_in_the_endpoint(
    stack, tmp_path, azure_server: AzureServer
):
    """The agent gets the azure:// URL and the endpoint's (encrypted) account key from the
    server and copies from Azurite at its site: every file, nothing failed."""
    name = azure_server.make_container()
    container = azure_server.container(name)
    expected = make_tree(tmp_path / "made", files=15, folders=3)
    for rel, data in expected.items():
        container.upload_blob(f"agent/{rel}", data)
    source = azure_server.azure_url(name, "agent")
    job_id, (code,) = setup(stack, source, tmp_path / "copy", secret=azure_server.secret)
    assert stack.enroll("agent1", code).returncode == 0
    stack.start_agent("agent1")

    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (len(expected), len(expected), 0, 0)
    assert tree_of(tmp_path / "copy") == expected
