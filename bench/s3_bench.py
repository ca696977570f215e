#!/usr/bin/env python
"""S3 benchmark: migrator_run (s3→file, manifest kept) against `rclone copy` with its s3
backend, reading the same bucket of the same moto server (tests/servers/s3.py, with
credentials checked) in the same run. Run by hand, never in CI; results go to
bench/RESULTS.md (S3 section) with the machine and date.

    python bench/s3_bench.py [--small 2000] [--folders 20] [--large-mb 256] [--repeat 2]
                             [--sets small,large]

Sets: `small` is --small objects of 1-4 KB in --folders folders, `large` one object of
--large-mb MB (uploaded in parts, as any tool uploads a big file, so its ETag is no md5).
Both tools take the key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the endpoint
from the command line. Each tool runs --repeat times, alternating. Besides the time,
the requests each run made are counted from moto's log, by method.

moto is a Python server on the same 2 cores: it measures what each client asks of a
server (requests per file) more than S3's speed.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import REPO, add_args, alternate, clean_env, measure, migrator_cmd, print_table

sys.path.insert(0, str(REPO))

from tests.servers import s3  # noqa: E402 - after the path is set
from tests.servers.util import stop_group  # noqa: E402

BUCKET = "bench"
REQUEST = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) ')


def build(client, small: int, folders: int, large_mb: int, sets: list[str]) -> None:
    """The objects: small ones by 16 threads, the large one in 16 MB parts."""
    from boto3.s3.transfer import TransferConfig

    client.create_bucket(Bucket=BUCKET)
    rng = random.Random(17)
    if "small" in sets:
        items = [
            (f"small/d{i % folders:02d}/f{i:05d}.dat", rng.randbytes(rng.randint(1024, 4096)))
            for i in range(small)
        ]
        with ThreadPoolExecutor(16) as pool:
            for _ in pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0],
                                                           Body=kv[1]), items):  # fmt: skip
                pass
    if "large" in sets:
        path = Path(tempfile.mkstemp(prefix="s3-bench-")[1])
        try:
            with open(path, "wb") as out:
                for _ in range(large_mb):
                    out.write(rng.randbytes(1 << 20))
            config = TransferConfig(multipart_chunksize=16 << 20, max_concurrency=4)
            client.upload_file(str(path), BUCKET, "large/big.bin", Config=config)
        finally:
            path.unlink()


def count_requests(log: Path, start: int) -> dict[str, int]:
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return dict(collections.Counter(REQUEST.findall(text)))


def run_once(tool: str, set_name: str, server, log: Path, work: Path, env_base: dict) -> dict:
    dst = work / f"{set_name}-{tool}"
    shutil.rmtree(dst, ignore_errors=True)
    env = {**env_base, **server.env()}
    if tool == "rclone":
        cmd = [
            "rclone", "copy", f":s3:{BUCKET}/{set_name}", str(dst),
            "--s3-provider", "Other", "--s3-env-auth", "--s3-endpoint", server.url,
            "--s3-region", s3.REGION, "--s3-force-path-style",
            "--transfers", "8", "--checkers", "8",
        ]  # fmt: skip
    else:
        source = f"s3://{BUCKET}/{set_name}?endpoint={server.url}"
        cmd = migrator_cmd(work, set_name, env, source, dst)
    offset = log.stat().st_size

    def requests() -> dict:
        time.sleep(0.2)  # moto writes its log line after the response
        return {"requests": count_requests(log, offset)}

    return measure(tool, set_name, cmd, env, dst, after=requests)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap, small=2000, folders=20)
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    env_base = clean_env("AWS_")
    work = Path(tempfile.mkdtemp(prefix="migrator-s3-bench-", dir=args.work))
    log = work / "moto.log"
    proc, url = s3.start_moto(log)
    try:
        access_key, secret_key = s3._enable_auth(url)
        server = s3.S3Server(url, access_key, secret_key)
        started = time.monotonic()
        build(server.client(), args.small, args.folders, args.large_mb, sets)
        print(f"data ready in {time.monotonic() - started:.1f}s", flush=True)
        rows = alternate(
            sets, args.repeat, lambda tool, name: run_once(tool, name, server, log, work, env_base)
        )
    finally:
        stop_group(proc)
        shutil.rmtree(work, ignore_errors=True)

    def asked(row: dict) -> str:
        return " ".join(f"{k} {v}" for k, v in sorted(row["requests"].items()))

    print_table(rows, sets, args.repeat, columns=(("requests", asked),))


if __name__ == "__main__":
    main()
