"""The synthetic source: deterministic, streaming, in scan order."""

import itertools
import tracemalloc

from migrator.storage import connector_for, path_key


def test_tree_matches_its_parameters_and_scan_order():
    conn = connector_for("synthetic://?files=1000&folders=27&depth=3&min_size=10&max_size=20")
    entries = list(conn.scan())
    files = [e for e in entries if e.kind == "file"]
    assert len(files) == 1000
    assert len({e.path.rsplit("/", 1)[0] for e in files}) == 27
    keys = [path_key(e.path) for e in entries]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(10 <= e.size <= 20 for e in files)
    again = list(
        connector_for("synthetic://?files=1000&folders=27&depth=3&min_size=10&max_size=20").scan()
    )
    assert again == entries


def test_open_gives_the_declared_size_deterministically():
    conn = connector_for("synthetic://?files=50&folders=5")
    for entry in itertools.islice((e for e in conn.scan() if e.kind == "file"), 10):
        data = conn.open(entry.path).read()
        assert len(data) == entry.size == conn.stat(entry.path).size
        assert data == conn.open(entry.path).read()


def test_scan_of_a_million_streams_in_small_memory():
    conn = connector_for("synthetic://?files=1000000&folders=1000&depth=2")
    tracemalloc.start()
    count = sum(1 for _ in conn.scan())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 1_000_000 + 1000 + 32
    assert peak < 5_000_000
