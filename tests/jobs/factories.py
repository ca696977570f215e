"""factory_boy factories for the jobs app, a job made through the real services,
`Steps`, which runs what the services enqueue when a test says so, a customer viewer's
client, and the share with the ACL cases (folders, files, who may open them) that the
`acl_share` fixture (tests/jobs/conftest.py) writes to the Samba DC, with `smb_job` and
`run_job` to migrate it in-process."""

from __future__ import annotations

import importlib
import json
import uuid

import factory
from django.test import Client

from accounts.choices import AccountSource, MembershipSource
from accounts.models import Customer, Membership, Profile
from jobs import services
from jobs.dispatch import set_inline
from jobs.models import Endpoint, MigrationJob, Pass
from migrator.acl import sd
from migrator.acl.model import FULL_CONTROL, MODIFY, READ_EXECUTE
from migrator.storage import connector_for


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n}")


class EndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Endpoint

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"endpoint {n}")
    url = factory.Sequence(lambda n: f"file:///tmp/migrator-factory/{n}")


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MigrationJob

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"job {n}")
    source = factory.SubFactory(EndpointFactory, customer=factory.SelfAttribute("..customer"))
    destination = factory.SubFactory(EndpointFactory, customer=factory.SelfAttribute("..customer"))


class PassFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pass

    job = factory.SubFactory(JobFactory)
    number = 1


class Steps:
    """Collects what the services enqueue; the test runs it when it chooses."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, tuple]] = []

    def __enter__(self) -> Steps:
        set_inline(lambda func, args: self.queue.append((func, args)))
        return self

    def __exit__(self, *exc) -> None:
        set_inline(None)

    def run(self, only: str | None = None, limit: int | None = None) -> int:
        """Run what is queued (only the tasks named `only`; at most `limit` of them),
        and what they queue in turn; returns how many ran."""
        ran = 0
        while limit is None or ran < limit:
            pick = next((t for t in self.queue if only is None or t[0].endswith(only)), None)
            if pick is None:
                return ran
            self.queue.remove(pick)
            module, _, name = pick[0].rpartition(".")
            getattr(importlib.import_module(module), name)(*pick[1])
            ran += 1
        return ran


def new_job(src_url: str, dst_url: str, **kwargs) -> MigrationJob:
    customer, _ = Customer.objects.get_or_create(name="ACME")
    source = services.endpoint_create(name="s", url=src_url, customer=customer)
    destination = services.endpoint_create(name="d", url=dst_url, customer=customer)
    return services.job_create(
        customer=customer, name="job", source=source, destination=destination, **kwargs
    )


def viewer(django_user_model, name: str, customer: Customer) -> Client:
    """A signed-in client of a new local user who views `customer`'s migrations."""
    user = django_user_model.objects.create_user(
        name, email=f"{name}@example.test", password="A-long-pass-9"
    )
    Profile.objects.create(user=user, source=AccountSource.LOCAL)
    Membership.objects.create(user=user, customer=customer, source=MembershipSource.MANUAL)
    client = Client()
    client.force_login(user)
    return client


# --- the share with the ACL cases -----------------------------------------------------------

OICI = sd.OBJECT_INHERIT_ACE | sd.CONTAINER_INHERIT_ACE
# AUTO_INHERIT_REQ: the server flags what children inherit as INHERITED, as Windows does
CONTROL = sd.SE_SELF_RELATIVE | sd.SE_DACL_AUTO_INHERITED | sd.SE_DACL_AUTO_INHERIT_REQ
READ_WRITE = 0x1201BF  # read & execute and write, not delete: no level holds it (narrowed)

# folder: (entries, protected); each folder holds one file made after its ACL (inherited)
CASES: dict[str, tuple[list[tuple[str, str, int]], bool]] = {
    "finance": ([("allow", "Finance", READ_EXECUTE), ("allow", "Administrator", FULL_CONTROL)],
                False),
    "alice-only": ([("allow", "alice", FULL_CONTROL), ("allow", "Administrator", FULL_CONTROL)],
                   True),
    "denied": ([("deny", "bob", FULL_CONTROL), ("allow", "Domain Users", MODIFY),
                ("allow", "Administrator", FULL_CONTROL)], False),
    "public": ([("allow", "Domain Users", MODIFY), ("allow", "Administrator", FULL_CONTROL)],
               False),
    "engineering": ([("allow", "Engineering", MODIFY), ("allow", "Administrator", FULL_CONTROL)],
                    False),
    "orphaned": ([("allow", "deleted", MODIFY), ("allow", "foreign", READ_EXECUTE),
                  ("allow", "Domain Users", READ_EXECUTE),
                  ("allow", "Administrator", FULL_CONTROL)], False),
    "special": ([("allow", "Finance", READ_WRITE), ("allow", "Administrator", FULL_CONTROL)],
                False),
}  # fmt: skip
FILES = {
    "finance/report.txt": b"Q3: revenue up\n",
    "alice-only/diary.txt": b"dear diary\n",
    "denied/secret.txt": b"bob must not read this\n",
    "public/readme.txt": b"hello everyone\n",
    "engineering/design.txt": b"blueprints\n",
    "orphaned/old-report.txt": b"2015\n",
    "special/notes.txt": b"read and write, not delete\n",
}
# who may open each file (the same before and after the migration)
ACCESS = {
    "finance/report.txt": {"alice"},
    "alice-only/diary.txt": {"alice"},
    "denied/secret.txt": {"alice"},
    "public/readme.txt": {"alice", "bob"},
    "engineering/design.txt": {"bob"},
    "orphaned/old-report.txt": {"alice", "bob"},
    "special/notes.txt": {"alice"},
}


OWNERS = {"alice-only": "alice"}  # else Administrator: an owner other than the writer


def descriptor(sids, entries, protected: bool, owner: str) -> sd.SecurityDescriptor:
    dacl = tuple(sd.Ace(kind, sids[who], mask, OICI) for kind, who, mask in entries)
    control = CONTROL | (sd.SE_DACL_PROTECTED if protected else 0)
    return sd.SecurityDescriptor(sids[owner], sids["Domain Users"], dacl, control=control)


def new_folder(dc, share: str) -> str:
    """A fresh folder in `share` over a connection of its own (see session_as in
    test_permissions.py)."""
    name = f"p-{uuid.uuid4().hex[:12]}"
    with connector_for(dc.smb_url(share), dc.admin_password) as conn:
        conn.mkdir(name)
    return name


# --- an SMB job over the ACL share, run in-process -------------------------------------------

# permissions on; users and groups mapped by the default rules to identities @example.test
RULES = {"enabled": True, "domain": "example.test", "group_domain": "example.test"}


def customer_with_ad(dc, name: str = "Example Corp") -> Customer:
    """A customer whose directory is the Samba DC (for the mapping's lookups)."""
    customer = Customer(
        name=name,
        directory_kind="ad",
        directory_uri=dc.ldap_uri,
        directory_bind_dn=f"CN=Administrator,CN=Users,{dc.base_dn}",
        directory_user_search_base=dc.base_dn,
        directory_domains=f"{dc.realm.lower()}, {dc.domain}",
    )
    customer.set_directory_bind_password(dc.admin_password)
    customer.save()
    return customer


def smb_job(dc, source: str, destination: str, options: dict) -> MigrationJob:
    """A job of a new AD customer from the folder `source` of [data] to `destination`."""
    customer = customer_with_ad(dc)
    src = services.endpoint_create(
        name="share", url=dc.smb_url("data", source), customer=customer, secret=dc.admin_password
    )
    dst = services.endpoint_create(name="dest", url=destination, customer=customer)
    return services.job_create(
        customer=customer, name="share", source=src, destination=dst, options=options
    )


def run_job(job: MigrationJob) -> MigrationJob:
    """Start `job` and run everything it enqueues, in this process; the job as it ended."""
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
    job.refresh_from_db()
    return job


# --- the on-premises agent's API, in-process ---------------------------------------------


def agent_side(name: str, tmp_path):
    """A customer with an agent pool, an enrolled agent and a local→local job of that pool,
    started: (job, agent, token)."""
    customer = Customer.objects.create(name=name)
    pool = services.agent_pool_create(customer=customer, name=f"{name} site")
    code = services.enrollment_code_create(pool=pool)
    agent, token = services.agent_enroll(code=code, name=f"{name}-host")
    src = services.endpoint_create(name="s", url=(tmp_path / name).as_uri(), customer=customer)
    dst = services.endpoint_create(name="d", url=(tmp_path / f"{name}-d").as_uri(),
                                   customer=customer)  # fmt: skip
    job = services.job_create(customer=customer, name=f"{name} job", source=src,
                              destination=dst, agent_pool=pool)  # fmt: skip
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
    return job, agent, token


def agent_post(token: str | None, path: str, body: dict | None = None):
    """POST to /api/agent/<path> as the agent with `token`: (status, JSON answer)."""
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Agent {token}"} if token else {}
    response = client.post(f"/api/agent/{path}", json.dumps(body or {}),
                           content_type="application/json", **headers)  # fmt: skip
    return response.status_code, response.json()


def object_acls(gcs_server, bucket: str, prefix: str) -> dict[str, list[dict]]:
    """The ACL of every object under `prefix` (the migrator's own files left out), by
    name below the prefix, entries sorted."""
    client = gcs_server.client()
    found = {}
    for blob in client.list_blobs(bucket, prefix=prefix):
        if "/.migrator/" in blob.name:
            continue
        b = client.bucket(bucket).blob(blob.name)
        b.acl.reload()
        found[blob.name.removeprefix(prefix)] = sorted(b.acl, key=lambda e: e["entity"])
    return found
