"""One batch through the engine with an in-memory sink: copy, record, stop, fail, and
permissions read, translated once per distinct descriptor and handed to the sink. Local
folders are real; the ACL source is a fake (the real path runs against Samba in
tests/jobs/test_permissions.py)."""

from __future__ import annotations

from migrator.acl import sd
from migrator.acl.mapping import IdentityMap, MappingRules
from migrator.acl.model import FULL_CONTROL, READ_EXECUTE, Principal
from migrator.engine.batch import run_batch
from migrator.engine.copy import CopyOptions, CopyTask, State
from migrator.engine.memory import MemorySink
from migrator.engine.permissions import (
    NO_DIRECTORY_MESSAGE,
    BatchPermissions,
    NoDirectory,
    PermissionOptions,
)
from migrator.engine.scan import Row
from migrator.storage import Capabilities, ConnectFailed
from migrator.storage.local import LocalConnector

DOM = "S-1-5-21-7-8-9"
ALICE, STAFF = f"{DOM}-1104", f"{DOM}-1200"


def sink_with(tasks: list[CopyTask]) -> MemorySink:
    sink = MemorySink()
    for t in tasks:
        sink.rows[t.item_id] = Row(0, 0, t.kind, t.source_path, t.dest_path, t.size)
    return sink


def files(root, count: int) -> list[CopyTask]:
    root.mkdir(exist_ok=True)
    tasks = []
    for i in range(count):
        (root / f"f{i}.txt").write_bytes(b"x" * i)
        tasks.append(CopyTask(i + 1, f"f{i}.txt", f"f{i}.txt", size=i))
    return tasks


def test_a_batch_is_copied_verified_and_recorded_once(tmp_path):
    tasks = files(tmp_path / "src", 12)
    sink = sink_with(tasks)
    outcomes = run_batch(
        tasks,
        source=lambda: LocalConnector(str(tmp_path / "src")),
        destination=lambda: LocalConnector(str(tmp_path / "dst")),
        options=CopyOptions(threads=3),
        sink=sink,
    )
    assert sorted(o.state for o in outcomes) == [State.COPIED] * 12
    assert sink.batches_recorded == 1
    assert sink.counts() == {"copied": 12, "unchanged": 0, "excluded": 0, "failed": 0,
                             "pending": 0, "seen": 12}  # fmt: skip
    assert (tmp_path / "dst" / "f11.txt").read_bytes() == b"x" * 11
    # the hash the source stream produced, for the manifest: crc32c to a local folder
    assert (sink.rows[12].md5, sink.rows[12].crc32c) == ("", "5056f02b")


def test_a_stopped_batch_leaves_the_rest_pending(tmp_path):
    tasks = files(tmp_path / "src", 10)
    sink = sink_with(tasks)
    asked = iter(range(100))
    sink.should_stop = lambda: next(asked) >= 4  # type: ignore[method-assign]
    run_batch(
        tasks,
        source=lambda: LocalConnector(str(tmp_path / "src")),
        destination=lambda: LocalConnector(str(tmp_path / "dst")),
        options=CopyOptions(threads=1, should_stop=sink.should_stop),
        sink=sink,
    )
    counts = sink.counts()
    assert counts["seen"] == 10 and 0 < counts["copied"] < 10
    assert counts["copied"] + counts["pending"] == 10


def test_a_destination_that_cannot_be_opened_fails_every_item_with_its_reason(tmp_path):
    tasks = files(tmp_path / "src", 3)
    sink = sink_with(tasks)

    def refuse():
        raise ConnectFailed("dst", "connection refused")

    run_batch(
        tasks,
        source=lambda: LocalConnector(str(tmp_path / "src")),
        destination=refuse,
        options=CopyOptions(),
        sink=sink,
    )
    assert {(r.state, r.reason) for r in sink.rows.values()} == {("failed", "connect_failed")}
    assert all("connection refused" in r.message for r in sink.rows.values())


def test_permissions_only_without_permissions_leaves_the_data(tmp_path):
    tasks = files(tmp_path / "src", 2)
    sink = sink_with(tasks)
    run_batch(tasks, source=lambda: LocalConnector(str(tmp_path / "src")),
              destination=lambda: LocalConnector(str(tmp_path / "dst")),
              options=CopyOptions(), sink=sink, only=True)  # fmt: skip
    assert sink.counts()["unchanged"] == 2 and not (tmp_path / "dst").exists()


class AclSource(LocalConnector):
    """A local folder whose files carry a security descriptor (a fake for the unit test)."""

    capabilities = Capabilities(acl=True)
    descriptors: dict[str, sd.SecurityDescriptor] = {}

    def read_acl(self, path):
        return self.descriptors[path]


class CountingDirectory(NoDirectory):
    calls = 0

    def resolve(self, sids):
        CountingDirectory.calls += 1
        return {s: Principal(s, "user", f"EX\\u{s[-4:]}", account=f"u{s[-4:]}",
                             upn=f"u{s[-4:]}@ex.test") for s in sids}  # fmt: skip


def test_permissions_are_translated_once_per_distinct_descriptor_and_linked_per_item(tmp_path):
    tasks = files(tmp_path / "src", 6)
    one = sd.SecurityDescriptor(ALICE, STAFF, (sd.Ace("allow", ALICE, FULL_CONTROL, 0),))
    two = sd.SecurityDescriptor(
        ALICE,
        STAFF,
        (sd.Ace("allow", STAFF, READ_EXECUTE, 0), sd.Ace("deny", ALICE, FULL_CONTROL, 0)),
    )
    AclSource.descriptors = {t.source_path: (one if t.item_id % 2 else two) for t in tasks}
    CountingDirectory.calls = 0
    perms = BatchPermissions(
        options=PermissionOptions(),
        target="file",  # a local destination: the permissions manifest only
        pass_id=1,
        directory=CountingDirectory,
        identities=lambda: IdentityMap(MappingRules(domain="ex.test")),
    )
    sink = sink_with(tasks)
    recorded = []
    real_record = sink.batch_record

    def record(tasks_, outcomes, acl):
        recorded.append((acl, outcomes))
        return real_record(tasks_, outcomes, acl)

    sink.batch_record = record  # type: ignore[method-assign]
    for half in (tasks[:3], tasks[3:]):
        run_batch(half, source=lambda: AclSource(str(tmp_path / "src")),
                  destination=lambda: LocalConnector(str(tmp_path / "dst")),
                  options=CopyOptions(threads=2), sink=sink, permissions=perms)  # fmt: skip
    assert len(sink.records) == 2  # two distinct descriptors, two records for the pass
    assert CountingDirectory.calls == 1  # the second batch found both records
    assert sink.counts()["copied"] == 6
    (first, first_outcomes), (second, _) = recorded
    links = {**first.item_acl, **second.item_acl}
    assert set(links) == {t.item_id for t in tasks}
    assert len(set(links.values())) == 2
    # items 1 and 3 carry the allow-only descriptor, item 2 the one with a deny entry:
    # the deny is counted for the item (and reported), never dropped
    _, counts, per_record = first.counts(first_outcomes)
    assert counts["acl_denied"] == 1
    assert sorted(per_record.values()) == [1, 2]


def test_without_a_directory_it_says_so_once(tmp_path):
    tasks = files(tmp_path / "src", 4)
    AclSource.descriptors = {
        t.source_path: sd.SecurityDescriptor(
            ALICE, STAFF, (sd.Ace("allow", ALICE, FULL_CONTROL, 0),)
        )
        for t in tasks
    }
    perms = BatchPermissions(
        options=PermissionOptions(),
        target="file",
        pass_id=2,
        directory=NoDirectory,
        identities=lambda: IdentityMap(MappingRules()),
    )
    sink = sink_with(tasks)
    for half in (tasks[:2], tasks[2:]):
        run_batch(half, source=lambda: AclSource(str(tmp_path / "src")),
                  destination=lambda: LocalConnector(str(tmp_path / "dst")),
                  options=CopyOptions(), sink=sink, permissions=perms)  # fmt: skip
    assert sink.events == [("warning", NO_DIRECTORY_MESSAGE)]
    assert sink.counts()["copied"] == 4
