"""factory_boy factories for the jobs app."""

from __future__ import annotations

import factory

from accounts.models import Customer
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
