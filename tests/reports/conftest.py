"""The reports' tests use the jobs' ACL share on the Samba DC (one per test module)."""

from tests.jobs.conftest import acl_share  # noqa: F401 - the fixture, shared
