"""S3 test server: moto in server mode (`moto_server`), started once per run on loopback.

It checks credentials as S3 does: the fixture makes an IAM user allowed `s3:*` with an
access key, then turns moto's authentication on, so a wrong key or secret is refused
(InvalidAccessKeyId, SignatureDoesNotMatch) like on AWS.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .util import free_port, stop_group, wait_for_port

REGION = "us-east-1"


@dataclass
class S3Server:
    url: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def secret(self) -> str:
        """The endpoint secret the connector takes: "ACCESS_KEY:SECRET_KEY"."""
        return f"{self.access_key}:{self.secret_key}"

    def env(self) -> dict[str, str]:
        """The environment a process (the CLI, rclone) finds the credentials in."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        """A boto3 S3 client for this server, with the valid key."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket, by default with a name no other test uses; return its name."""
        if name is None:
            name = f"test-{next(self._numbers)}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def s3_url(self, bucket: str, prefix: str = "") -> str:
        """The connector's URL for `bucket/prefix` on this server."""
        return f"s3://{bucket}/{prefix}?endpoint={self.url}"


def _enable_auth(url: str) -> tuple[str, str]:
    """An IAM user allowed s3:* and its access key; then moto checks every request."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=url,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
        region_name=REGION,
    )
    iam.create_user(UserName="migrator")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="migrator", PolicyName="s3-all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="migrator")["AccessKey"]
    reset = f"{url}/moto-api/reset-auth"
    # moto reads the raw body: a form content type (urllib's default) would hide it
    headers = {"Content-Type": "text/plain"}
    request = urllib.request.Request(reset, b"0", headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        answer.read()
    return key["AccessKeyId"], key["SecretAccessKey"]


def start_moto(log_path: Path, *, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start moto_server on a loopback port (a free one unless given); return it and its URL."""
    executable = Path(sys.executable).parent / "moto_server"
    port = port or free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for_port(port, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_group(proc)
        raise RuntimeError(f"{exc}; moto log:\n{log_path.read_text()}") from exc
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server on a free loopback port, checking credentials, for the whole run."""
    proc, url = start_moto(tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        access_key, secret_key = _enable_auth(url)
        yield S3Server(url, access_key, secret_key)
    finally:
        stop_group(proc)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket's name."""
    return s3_server.make_bucket()


@pytest.fixture
def contract_s3(s3_server: S3Server, s3_bucket: str) -> Iterator[object]:
    """An S3Connector rooted at an empty prefix of a fresh bucket, with neighbours outside
    the root (a sibling prefix sharing its first letters, an object beside it) that it
    must never see."""
    from migrator.storage.s3 import from_url

    client = s3_server.client()
    for name in ("root-sibling/x.txt", "outside.txt", "root0"):
        client.put_object(Bucket=s3_bucket, Key=name, Body=b"not under the root")
    connector = from_url(s3_server.s3_url(s3_bucket, "root"), s3_server.secret)
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
def contract_s3_missing(s3_server: S3Server) -> Iterator[object]:
    """An S3Connector for a bucket that does not exist."""
    from migrator.storage.s3 import from_url

    url = s3_server.s3_url(f"missing-{uuid.uuid4().hex[:12]}", "root")
    connector = from_url(url, s3_server.secret)
    try:
        yield connector
    finally:
        connector.close()
