"""migrator_run with an S3 bucket (moto's server) as source and as destination, as a user
runs it: the endpoint URL in the s3:// URL, the credentials in AWS_* variables."""

from __future__ import annotations

import base64
import hashlib
import os

from tests.servers.s3 import S3Server

from .conftest import make_tree, tree_of

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
