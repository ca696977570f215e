"""factory_boy factories for the jobs app, a job made through the real services, and
`Steps`, which runs what the services enqueue when a test says so."""

from __future__ import annotations

import importlib

import factory

from accounts.models import Customer
from jobs import services
from jobs.dispatch import set_inline
from jobs.models import Endpoint, MigrationJob, Pass


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
