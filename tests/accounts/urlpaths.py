"""Every concrete path of the URL conf, each parameter filled with one customer's ids:
the isolation walk's and the secrets scan's paths."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from django.urls.resolvers import RegexPattern, RoutePattern

from jobs.models import MigrationJob
from tests.security.urlwalk import routes

MAX_COMBINATIONS = 400  # per pattern; more would only repeat the same question

ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)")


def candidate_values(converter: str, body: str, ints: list[int]) -> list[str]:
    if body and re.fullmatch(r"[\w|]+", body) and "|" in body:
        return body.split("|")  # an alternation of words: the admin's app labels
    numbers = [str(i) for i in ints]
    if converter in ("int",) or body in (r"\d+", "[0-9]+"):
        return numbers
    if converter == "uuid":
        return ["00000000-0000-0000-0000-000000000000"]
    if converter == "slug":  # report names: every report of every job is walked
        from reports.registry import REPORTS

        return [*REPORTS, "x"]
    return [*numbers, "x"]  # never a marker: pages may echo the path back


def concrete_paths(parts: tuple, ints: list[int]) -> Iterator[str]:
    """Every path for one pattern, each parameter filled with each candidate."""
    templates: list[str] = []
    slots: list[list[str]] = []
    for part in parts:
        if isinstance(part, RoutePattern):
            text = str(part._route)
            for m in ROUTE_PARAM.finditer(text):
                slots.append(candidate_values(m.group("converter") or "str", "", ints))
            templates.append(ROUTE_PARAM.sub("{}", text.replace("{", "{{").replace("}", "}}")))
        elif isinstance(part, RegexPattern):
            text = part._regex.lstrip("^").removesuffix(r"\Z").rstrip("$")
            for m in REGEX_GROUP.finditer(text):
                slots.append(candidate_values("", m.group("body"), ints))
            text = REGEX_GROUP.sub("\x00", text)
            text = re.sub(r"\\(.)", r"\1", text).replace("{", "{{").replace("}", "}}")
            templates.append(text.replace("\x00", "{}"))
        else:  # a pattern kind this walk does not know: fail loudly rather than skip
            raise AssertionError(f"unknown URL pattern type {type(part)!r}: {part}")
    template = "/" + "".join(templates)
    for combo in itertools.islice(itertools.product(*slots), MAX_COMBINATIONS):
        yield template.format(*combo)


def body_of(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


def all_paths(ints: list[int], job_a: MigrationJob) -> list[str]:
    query = f"?job={job_a.pk}&customer={job_a.customer_id}&pk={job_a.pk}&id={job_a.pk}&pass=1"
    found: list[str] = []
    for parts, _ in routes():
        for path in concrete_paths(parts, ints):
            found.append(path)
            if not path.startswith("/admin/"):
                found.append(path + query)
    return sorted(set(found))
