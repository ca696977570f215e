"""migrator_run with an S3 bucket (moto's server) as source and as destination, as a user
runs it: the endpoint URL in the s3:// URL, the credentials in AWS_* variables; and an S3
source copied by a real worker cluster and by an on-premises agent, the key given as the
source endpoint's secret."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys

from tests.servers.s3 import S3Server

from .conftest import (
    REPO,
    base_env,
    kill_group,
    make_tree,
    setup,
    start_cluster,
    tree_of,
    wait_until,
)

MTIME_NS = 1_600_000_000_123_456_789


def test_cli_s3_to_local_copies_everything_then_nothing(cli, tmp_path, s3_server: S3Server):
    bucket = s3_server.make_bucket()
    expected = make_tree(tmp_path / "made", files=12)
    client = s3_server.client()
    for rel, data in expected.items():
        metadata = {"mtime": "1600000000.123456789"} if rel.endswith("plain.txt") else {}
        client.put_object(Bucket=bucket, Key=f"share/{rel}", Body=data, Metadata=metadata)
    client.put_object(Bucket=bucket, Key="elsewhere.txt", Body=b"not under the prefix")
    source, dst = s3_server.s3_url(bucket, "share"), tmp_path / "dst"

    first = cli.run("--source", source, "--destination", dst.as_uri(), "--json", **s3_server.env())

    assert first.code == 0, first.stderr
    summary = first.json
    assert summary["state"] == "completed"
    assert summary["seen"] == summary["copied"] == len(expected)
    assert summary["bytes_copied"] == sum(len(b) for b in expected.values())
    assert tree_of(dst) == expected  # the prefix's contents, nothing from beside it
    assert os.stat(dst / "d0/plain.txt").st_mtime_ns == MTIME_NS

    again = cli.run("--source", source, "--destination", dst.as_uri(), "--json", **s3_server.env())
    assert again.code == 0, again.stderr
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_cli_local_to_s3_keeps_md5_and_mtime(cli, tmp_path, s3_server: S3Server):
    bucket = s3_server.make_bucket()
    src = tmp_path / "src"
    expected = make_tree(src, files=8)
    big = os.urandom(9 << 20)  # a multipart upload
    (src / "big.bin").write_bytes(big)
    expected["big.bin"] = big
    os.utime(src / "big.bin", ns=(MTIME_NS, MTIME_NS))
    dest = s3_server.s3_url(bucket, "migrated")

    # no --profile: an S3 destination keeps names as they are (a key is any UTF-8)
    args = ("--source", src.as_uri(), "--destination", dest, "--json")
    first = cli.run(*args, **s3_server.env())

    assert first.code == 0, first.stderr
    assert first.json["copied"] == len(expected)
    client = s3_server.client()
    for rel, data in expected.items():
        head = client.head_object(Bucket=bucket, Key=f"migrated/{rel}")
        body = client.get_object(Bucket=bucket, Key=f"migrated/{rel}")["Body"].read()
        assert body == data
        assert head["ContentLength"] == len(data)
        assert "mtime" in head["Metadata"]
    big_head = client.head_object(Bucket=bucket, Key="migrated/big.bin")
    assert big_head["Metadata"]["mtime"] == "1600000000.123456789"
    assert hashlib.md5(big).hexdigest() in (
        big_head["ETag"].strip('"'),
        base64.b64decode(big_head["Metadata"].get("md5chksum", "")).hex(),
    )

    again = cli.run(*args, **s3_server.env())
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_cli_wrong_secret_is_one_clear_line_before_any_work(cli, tmp_path, s3_server):
    bucket = s3_server.make_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="share/a.txt", Body=b"a")
    env = {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret-key"}

    result = cli.run(
        "--source", s3_server.s3_url(bucket, "share"), "--destination", str(tmp_path / "d"), **env
    )

    assert result.code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot start: source s3://" in result.stderr
    assert "wrong secret key" in result.stderr
    assert "not-the-secret-key" not in result.stderr + result.stdout
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


CLUSTER_ENV = {
    "MIGRATOR_TASK_TIMEOUT": "8",
    "MIGRATOR_LEASE_SECONDS": "10",
    "MIGRATOR_BATCH_FILES": "10",
    "MIGRATOR_ENV_FILE": "",
}
CREATE_AND_START = """
from accounts.models import Customer
from jobs import services
c, _ = Customer.objects.get_or_create(name="S3 on the cluster")
s = services.endpoint_create(name="src", url={src!r}, customer=c, secret={secret!r})
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="from s3", source=s, destination=d)
services.job_start(job=job)
print(job.pk)
"""
ENDED = ("completed", "completed_with_errors", "failed", "cancelled")


def put_tree(s3_server: S3Server, bucket: str, prefix: str, tree: dict[str, bytes]) -> None:
    """The tree's files as objects under `prefix`, and one object beside the prefix."""
    client = s3_server.client()
    for rel, data in tree.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)
    client.put_object(Bucket=bucket, Key=f"{prefix}-beside.txt", Body=b"not under the prefix")


def ended(cli, job_id: int) -> str | None:
    """The job's state once it has ended, else None."""
    (state,) = cli.query("SELECT state FROM jobs_migrationjob WHERE id = ?", job_id)[0]
    return state if state in ENDED else None


def counters(cli, job_id: int) -> tuple:
    """(seen, copied, unchanged, excluded, failed, pending) of the job's one pass."""
    (row,) = cli.query(
        "SELECT seen, copied, unchanged, excluded, failed, pending FROM jobs_pass WHERE job_id = ?",
        job_id,
    )
    return row


def test_s3_source_on_a_worker_cluster_with_the_key_in_the_endpoint(
    cli, tmp_path, s3_server: S3Server
):
    """A job created and started through the services, run by a real qcluster: every object
    arrives byte for byte, nothing from beside the prefix, and the counts reconcile."""
    bucket = s3_server.make_bucket()
    expected = make_tree(tmp_path / "made", files=15, folders=3)
    put_tree(s3_server, bucket, "share", expected)
    dst = tmp_path / "dst"
    env = base_env(cli.db, **CLUSTER_ENV, **cli.env_extra)
    code = CREATE_AND_START.format(
        src=s3_server.s3_url(bucket, "share"), dst=dst.as_uri(), secret=s3_server.secret
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    job_id = int(out.stdout.strip().splitlines()[-1])
    log = tmp_path / "cluster.log"

    cluster = start_cluster(env, log)
    try:
        state = wait_until(lambda: ended(cli, job_id), 60, "the job to finish")
    finally:
        kill_group(cluster)

    assert state == "completed", log.read_text()[-2000:]
    seen, copied, unchanged, excluded, failed, pending = counters(cli, job_id)
    assert seen == copied + unchanged + excluded + failed + pending
    assert (seen, copied, failed, pending) == (len(expected), len(expected), 0, 0)
    assert tree_of(dst) == expected
    assert s3_server.secret_key not in log.read_text()


def test_s3_source_through_the_agent_with_the_key_in_the_endpoint(
    stack, tmp_path, s3_server: S3Server
):
    """The agent gets the s3:// URL and the endpoint's (encrypted) key from the server and
    copies from the bucket at its site: every object, nothing failed."""
    bucket = s3_server.make_bucket()
    expected = make_tree(tmp_path / "made", files=15, folders=3)
    put_tree(s3_server, bucket, "agent", expected)
    source = s3_server.s3_url(bucket, "agent")
    job_id, (code,) = setup(stack, source, tmp_path / "copy", secret=s3_server.secret)
    assert stack.enroll("agent1", code).returncode == 0
    stack.start_agent("agent1")

    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, excluded, failed, pending = counters(stack.cli, job_id)
    assert seen == copied + unchanged + excluded + failed + pending
    assert (seen, copied, failed, pending) == (len(expected), len(expected), 0, 0)
    assert tree_of(tmp_path / "copy") == expected
