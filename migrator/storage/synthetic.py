"""A deterministic tree computed from parameters: no disk, any size. For tests and
benchmarks of the scan, the manifest and the copy at millions of files.

    synthetic://?files=1000000&folders=1000&depth=2&min_size=1024&max_size=4096&seed=1
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

from .base import Capabilities, Connector, Entry, ScanError, Written
from .errors import NotFound, Unsupported
from .local import check_relative

BASE_MTIME_NS = 1_700_000_000 * 10**9
# Small files' bytes are slices of one seeded block (a Random per file cost more than the
# rest of a small file's copy: Mersenne seeding alone was 3 % of a whole pipeline run)
POOL_BYTES = 1 << 17


class SyntheticConnector(Connector):
    scheme = "synthetic"
    capabilities = Capabilities(mtime_precision_ns=1, writable=False)
    # its bytes are computed in this process: threads add only GIL hand-offs (copy.py)
    copy_threads = 1

    def __init__(self, files: int = 1000, folders: int = 10, depth: int = 1,
                 min_size: int = 1024, max_size: int = 4096, seed: int = 1) -> None:  # fmt: skip
        if files < 0 or folders < 1 or depth < 1 or not 0 <= min_size <= max_size:
            raise ValueError("synthetic: need files >= 0, folders >= 1, depth >= 1, sizes ordered")
        self.files, self.folders, self.depth = files, folders, depth
        self.min_size, self.max_size, self.seed = min_size, max_size, seed
        self.fanout = max(1, math.ceil(folders ** (1 / depth) - 1e-9))
        self.width = len(str(max(self.fanout - 1, 0)))
        self.file_width = len(str(max(files - 1, 0)))
        # files spread evenly over the leaf folders, in order
        self.per_folder = math.ceil(files / folders) if files else 0
        self._pool: bytes | None = None

    def _folder_parts(self, leaf: int) -> list[str]:
        parts = []
        for level in range(self.depth):
            digit = (leaf // self.fanout ** (self.depth - 1 - level)) % self.fanout
            parts.append(f"d{digit:0{self.width}d}")
        return parts

    def _size(self, index: int) -> int:
        span = self.max_size - self.min_size + 1
        return self.min_size + (index * 2654435761 + self.seed) % span

    def _file_entry(self, folder: str, index: int) -> Entry:
        return Entry(f"{folder}/f{index:0{self.file_width}d}.dat", "file", self._size(index),
                     BASE_MTIME_NS + index * 1000)  # fmt: skip

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        prefix = prefix.strip("/")
        open_dirs: list[str] = []
        for leaf in range(self.folders):
            first = leaf * self.per_folder
            if first >= self.files and leaf:
                break
            parts = self._folder_parts(leaf)
            for level in range(self.depth):
                path = "/".join(parts[: level + 1])
                if len(open_dirs) > level and open_dirs[level] == path:
                    continue
                del open_dirs[level:]
                open_dirs.append(path)
                if path != prefix and _under(path, prefix):  # not the prefix itself
                    yield Entry(path, "dir", 0, BASE_MTIME_NS)
            folder = "/".join(parts)
            if not (_under(folder, prefix) or _under(prefix, folder)):
                continue
            indexes = range(first, min(first + self.per_folder, self.files))
            if not _under(folder, prefix):  # the prefix is a file in this folder
                for index in indexes:
                    entry = self._file_entry(folder, index)
                    if _under(entry.path, prefix):
                        yield entry
                continue
            # the hot loop of scan benchmarks: _file_entry inlined
            name = f"{folder}/f{{:0{self.file_width}d}}.dat".format
            low, span, seed = self.min_size, self.max_size - self.min_size + 1, self.seed
            for index in indexes:
                yield Entry(name(index), "file", low + (index * 2654435761 + seed) % span,
                            BASE_MTIME_NS + index * 1000)  # fmt: skip

    def _index(self, path: str) -> int:
        check_relative(path)
        folder, _, name = path.rpartition("/")
        try:
            index = int(name[1:-4]) if name.startswith("f") and name.endswith(".dat") else -1
        except ValueError:
            index = -1
        if not 0 <= index < self.files or self._file_entry(folder, index).path != path:
            raise NotFound(path, "no such synthetic file")
        expected_leaf = index // self.per_folder
        if "/".join(self._folder_parts(expected_leaf)) != folder:
            raise NotFound(path, "no such synthetic file")
        return index

    def stat(self, path: str) -> Entry:
        folder, _, _ = path.rpartition("/")
        return self._file_entry(folder, self._index(path))

    def open(self, path: str) -> BinaryIO:
        index = self._index(path)
        size = self._size(index)
        if size > POOL_BYTES // 2:
            return io.BytesIO(random.Random(self.seed * 1_000_003 + index).randbytes(size))
        if self._pool is None:
            self._pool = random.Random(self.seed * 1_000_003 - 1).randbytes(POOL_BYTES)
        start = (index * 2654435761) % (POOL_BYTES - size + 1)
        return io.BytesIO(self._pool[start : start + size])

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        raise Unsupported(path, "synthetic sources are read-only")

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        raise Unsupported(path, "synthetic sources are read-only")

    def delete(self, path: str) -> None:
        raise Unsupported(path, "synthetic sources are read-only")

    def check(self) -> None:
        return None


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def from_url(url: str, secret: str | None = None) -> SyntheticConnector:
    query = parse_qs(urlsplit(url).query)
    known = {"files", "folders", "depth", "min_size", "max_size", "seed"}
    unknown = set(query) - known
    if unknown:
        raise ValueError(f"synthetic: unknown parameter(s) {', '.join(sorted(unknown))}")
    try:
        params = {k: int(v[-1]) for k, v in query.items()}
    except ValueError:
        raise ValueError(f"synthetic: parameters must be whole numbers in {url!r}")
    return SyntheticConnector(**params)
