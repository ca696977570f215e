#!/usr/bin/env python
"""Azure Blob benchmark: migrator_run (azure→file, manifest kept) against `rclone copy`
with its azureblob backend, reading the same container of the same Azurite
(tests/servers/azure.py, Shared Key signatures checked) in the same run. Run by hand, never
in CI; results go to bench/RESULTS.md (Azure section) with the machine and date.

    python bench/azure_bench.py [--small 2000] [--folders 20] [--large-mb 256] [--repeat 2]
                                [--sets small,large]

Sets: `small` is --small blobs of 1-4 KB in --folders folders, `large` one blob of
--large-mb MB (uploaded in blocks by the SDK, as any tool uploads a big file). migrator
takes the key from AZURE_STORAGE_KEY and the endpoint from its URL; rclone (whose
azureblob takes an endpoint only as a domain suffix, or the emulator on port 10000) a
read/list SAS URL of the container in RCLONE_AZUREBLOB_SAS_URL: nothing secret on a
command line.

Azurite is a Node.js server on the same 2 cores: it measures what each client asks of a
server more than Azure's speed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import REPO, add_args, alternate, clean_env, measure, migrator_cmd, print_table

sys.path.insert(0, str(REPO))

from tests.servers import azure  # noqa: E402 - after the path is set
from tests.servers.util import stop_group  # noqa: E402

CONTAINER = "bench"


def build(server: azure.AzureServer, small: int, folders: int, large_mb: int, sets: list) -> None:
    """The blobs: small ones by 16 threads, the large one in blocks, 4 at a time."""
    container = server.container(server.make_container(CONTAINER))
    rng = random.Random(17)
    if "small" in sets:
        items = [
            (f"small/d{i % folders:02d}/f{i:05d}.dat", rng.randbytes(rng.randint(1024, 4096)))
            for i in range(small)
        ]
        with ThreadPoolExecutor(16) as pool:
            for _ in pool.map(lambda kv: container.upload_blob(kv[0], kv[1]), items):
                pass
    if "large" in sets:
        path = Path(tempfile.mkstemp(prefix="azure-bench-")[1])
        try:
            with open(path, "wb") as out:
                for _ in range(large_mb):
                    out.write(rng.randbytes(1 << 20))
            with open(path, "rb") as data:
                container.get_blob_client("large/big.bin").upload_blob(data, max_concurrency=4)
        finally:
            path.unlink()


def container_sas_url(server: azure.AzureServer) -> str:
    """The container's URL with a read/list SAS token: rclone 1.60's azureblob takes an
    endpoint only as a domain suffix (or the emulator on port 10000), a SAS URL anywhere."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    token = generate_container_sas(
        server.account,
        CONTAINER,
        account_key=server.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=4),
    )
    return f"{server.endpoint}/{CONTAINER}?{token}"


def run_once(tool: str, set_name: str, server, work: Path, env_base: dict) -> dict:
    dst = work / f"{set_name}-{tool}"
    shutil.rmtree(dst, ignore_errors=True)
    env = {**env_base, **server.env()}
    if tool == "rclone":
        env.update(RCLONE_AZUREBLOB_SAS_URL=container_sas_url(server))
        cmd = ["rclone", "copy", f":azureblob:{CONTAINER}/{set_name}", str(dst),
               "--transfers", "8", "--checkers", "8"]  # fmt: skip
    else:
        source = f"azure://{server.account}/{CONTAINER}/{set_name}?endpoint={server.endpoint}"
        cmd = migrator_cmd(work, set_name, env, source, dst)
    return measure(tool, set_name, cmd, env, dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap, small=2000, folders=20)
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    env_base = clean_env("AZURE_", "RCLONE_")
    work = Path(tempfile.mkdtemp(prefix="migrator-azure-bench-", dir=args.work))
    proc, endpoint = azure.start_azurite(work / "azurite")
    try:
        server = azure.AzureServer(endpoint)
        started = time.monotonic()
        build(server, args.small, args.folders, args.large_mb, sets)
        print(f"data ready in {time.monotonic() - started:.1f}s", flush=True)

        def once(tool: str, name: str) -> dict:
            return run_once(tool, name, server, work, env_base)

        rows = alternate(sets, args.repeat, once)
    finally:
        stop_group(proc)
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, sets, args.repeat)


if __name__ == "__main__":
    main()
