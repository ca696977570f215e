"""One-shot migration: python manage.py migrator_run --source URL --destination URL."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from accounts.models import Customer
from accounts.services import customer_get_or_create
from jobs import permissions, selectors, services
from jobs.choices import Conflicts, JobState, OnExists
from jobs.connectors import check_endpoint
from jobs.deletions import AWAITING, awaiting_count, cap_for, cap_of, deletions_confirm
from jobs.inline import InlineRunner
from jobs.models import MigrationJob, Pass
from jobs.options import PERMISSIONS
from migrator.acl.directory import DirectoryError
from migrator.acl.mapping import MappingCSVError, parse_mapping_csv
from migrator.acl.model import DenyPolicy
from migrator.engine.permissions import PermissionOptions
from migrator.sanitize import PROFILES
from migrator.storage import StorageError, connector_module

EXIT_COMPLETED, EXIT_ERRORS, EXIT_USAGE, EXIT_FAILED, EXIT_PAUSED = 0, 1, 2, 3, 4
DELETE_POLICIES = ("keep", "mirror", "trash")


class Usage(Exception):
    pass


class _AwaitingConfirmation(Exception):  # noqa: N818 - a way out of the wait, not an error
    def __init__(self, job: MigrationJob) -> None:
        self.job = job


def _confirm_deletions(*, job: MigrationJob) -> None:
    """The job's pass waits for its deletions (more than the cap): run again, the command
    confirms them when the --max-delete it was given allows that many, as staff would."""
    job.refresh_from_db()
    p = Pass.objects.get(pk=job.current_pass_id)
    n, cap = awaiting_count(p), cap_for(p, job.options)
    if n > cap:
        raise Usage(
            f"job {job.pk}: pass {p.number} is waiting for confirmation of {n} deletions "
            f"(cap {cap}): confirm or skip them in the admin, or run again with "
            f"--max-delete {n}"
        )
    deletions_confirm(job)


def _deletion_options(opts: dict) -> dict:
    """--deletes and --max-delete as the job's options (only those given)."""
    given = {"deletes": opts["deletes"], "max_delete": opts["max_delete"]}
    return {key: value for key, value in given.items() if value is not None}


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Usage(f"expected a whole number of bytes per second, got {value!r}")
    if number < 0:
        raise Usage("--bwlimit must not be negative")
    return number


def _processes(workers: int) -> int:
    """Copy batches in `workers` child processes (each holds a core), unless told not to
    (MIGRATOR_CLI_PROCESSES=0) or the database lives in this process's memory."""
    name = str(connection.settings_dict["NAME"])
    if os.environ.get("MIGRATOR_CLI_PROCESSES", "1") == "0" or "memory" in name:
        return 0
    return workers


class Command(BaseCommand):
    help = "Copy a source into a destination through a migration job, and wait for the end."
    # a one-shot run: the checks are for the deployment (manage.py check --deploy), and
    # importing every admin and URL module for them cost ~0.5 s of start-up per run
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str) -> None:  # one line, exit 2, no usage dump
            sys.stderr.write(f"migrator_run: {message}\n")
            sys.exit(EXIT_USAGE)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source", required=True, help="a folder, or file:///…, gs://…, smb://…"
        )
        parser.add_argument("--destination", required=True, help="the same kinds")
        parser.add_argument("--customer", default="Default")
        parser.add_argument("--name", default="")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--bwlimit", default=None, help="bytes per second")
        parser.add_argument("--on-exists", default=None, choices=OnExists.values)
        parser.add_argument("--workers", type=int, default=None)
        parser.add_argument("--profile", default=None, help="sanitization profile")
        parser.add_argument("--assess", action="store_true", help="scan only: the assessment")
        parser.add_argument("--conflicts", default=None, choices=Conflicts.values,
                            help="a catch-up pass, when an object changed at the destination "
                                 "since it was written: source_wins (default), "
                                 "destination_wins, keep_both")  # fmt: skip
        parser.add_argument("--hashes", default=None, metavar="md5,crc32c",
                            help="content hashes to compute besides what the destination "
                                 "verifies (GCS: md5 and crc32c; others: crc32c)")  # fmt: skip
        parser.add_argument("--deletes", default=None, choices=DELETE_POLICIES,
                            help="a catch-up pass, for what is gone at the source: keep (default: "
                                 "recorded, kept at the destination), mirror (deleted there too), "
                                 "trash (moved to .migrator-trash/<pass>/ there)")  # fmt: skip
        parser.add_argument("--max-delete", default=None, metavar="5%|COUNT",
                            help="delete (or trash) at most this many files, or this share of "
                                 "the destination's, without a person's confirmation "
                                 "(default 5%%)")  # fmt: skip
        cli_arguments(parser)

    def handle(self, *args, **opts) -> None:
        try:
            code = self._run(opts)
        except Usage as exc:
            sys.stderr.write(f"migrator_run: {exc}\n")
            code = EXIT_USAGE
        sys.stdout.flush()
        sys.exit(code)

    def _run(self, opts: dict) -> int:
        for key in ("source", "destination"):
            if "://" not in opts[key]:  # a plain folder path: a local folder
                opts[key] = Path(opts[key]).absolute().as_uri()
            try:  # imported here, so the copy processes forked below have it loaded
                connector_module(opts[key])
            except ValueError as exc:
                raise Usage(str(exc))
        bwlimit = _positive_int(opts["bwlimit"]) if opts["bwlimit"] is not None else None
        if opts["profile"] and opts["profile"] not in PROFILES:
            raise Usage(f"unknown profile {opts['profile']!r}: one of {', '.join(PROFILES)}")
        if opts["hashes"] is not None:
            from migrator.engine.streams import parse_hashes

            try:
                opts["hashes"] = sorted(parse_hashes(opts["hashes"]))
            except ValueError as exc:
                raise Usage(f"--hashes: {exc}")
        if opts["max_delete"] is not None:
            try:
                cap_of({"max_delete": opts["max_delete"]})
            except ValueError as exc:
                raise Usage(f"--max-delete: {exc}")
        try:
            perms = cli_prepare(opts, dict(os.environ))
        except ValueError as exc:
            raise Usage(str(exc))
        workers = opts["workers"] or int(os.environ.get("MIGRATOR_WORKERS", "2"))
        # the runner first: its copy processes are forked before this process opens a
        # database connection or starts a thread (see InlineRunner)
        with InlineRunner(workers=workers, processes=_processes(workers)) as runner:
            return self._migrate(opts, runner, bwlimit, perms)

    def _migrate(self, opts: dict, runner: InlineRunner, bwlimit: int | None, perms) -> int:
        try:
            customer = customer_get_or_create(name=opts["customer"])
        except DatabaseError as exc:  # a new database: say what to run, not a traceback
            raise Usage(f"the database is not ready ({exc}): run `python manage.py migrate`")
        source = self._endpoint(opts["source"], customer)
        destination = self._endpoint(opts["destination"], customer)
        for role, endpoint in (("source", source), ("destination", destination)):
            try:
                check_endpoint(endpoint, destination=role == "destination")
            except (StorageError, ValueError) as exc:
                raise Usage(f"cannot start: {role} {endpoint.url}: {exc}")
        same = MigrationJob.objects.filter(
            customer=customer, source=source, destination=destination
        ).order_by("-pk")
        # an assessment and a migration of the same pair are different jobs
        job = next(
            (j for j in same if bool((j.options or {}).get("assess_only")) == opts["assess"]),
            None,
        )
        waiting = None  # a pass of this job waiting for its deletions to be confirmed
        if job is None:
            options: dict = {"assess_only": True} if opts["assess"] else {}
            if opts["profile"]:
                options["profile"] = opts["profile"]
            if opts["hashes"]:
                options["hashes"] = opts["hashes"]
            if opts["conflicts"]:
                options["conflicts"] = opts["conflicts"]
            options.update(_deletion_options(opts))
            suffix = " (assessment)" if opts["assess"] else ""
            job = services.job_create(
                customer=customer,
                name=(opts["name"] or f"{source.url} → {destination.url}") + suffix,
                source=source,
                destination=destination,
                on_exists=opts["on_exists"] or OnExists.SKIP_IDENTICAL,
                bwlimit=bwlimit,
                options=options,
            )
        else:
            profile = {"profile": opts["profile"]} if opts["profile"] else {}
            if opts["hashes"] is not None:  # given again: what this run asks for
                profile["hashes"] = opts["hashes"]
            if opts["conflicts"] is not None:
                profile["conflicts"] = opts["conflicts"]
            profile.update(_deletion_options(opts))  # given again: what this run asks for
            services.job_settings_update(
                job=job, on_exists=opts["on_exists"], bwlimit=bwlimit,
                options={**(job.options or {}), **profile},
            )  # fmt: skip
            waiting = Pass.objects.filter(pk=job.current_pass_id, deletes_state=AWAITING).first()
            if waiting is None and job.state not in (
                JobState.DRAFT, JobState.PAUSED, *selectors.FINISHED
            ):
                raise Usage(f"job {job.pk} for this source and destination is {job.state}")
        if perms is not None:  # options, the source's directory, the identity CSV
            cli_apply(perms, job=job, source=source)
        start = services.job_start_permissions if perms and perms.only else services.job_start
        if job.state == JobState.PAUSED:  # paused (say, the destination was full): go on
            start = services.job_resume
        if waiting is not None:  # confirmed when the --max-delete given now allows them
            start = _confirm_deletions
        show = sys.stderr.isatty() and not opts["json"]
        started = time.monotonic()
        start(job=job)
        try:
            job = runner.wait(job, on_tick=self._tick(runner, show))
        except _AwaitingConfirmation as stopped:  # deletions over the cap: a person decides
            job = stopped.job
        if show:
            sys.stderr.write("\n")
        summary = selectors.job_summary(job=job)
        summary["seconds"] = round(time.monotonic() - started, 3)
        if opts["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self._print_summary(summary)
        if summary.get("waiting"):
            sys.stderr.write(
                f"migrator_run: pass {summary['pass']} is {summary['waiting']} (over "
                "--max-delete): confirm or skip them in the admin, or POST "
                f"/api/v1/jobs/{job.pk}/deletions/confirm/ (or skip/)\n"
            )
            return EXIT_PAUSED
        if job.state in (JobState.COMPLETED, JobState.ASSESSED):
            return EXIT_COMPLETED
        if job.state == JobState.COMPLETED_WITH_ERRORS:
            return EXIT_ERRORS
        if job.state == JobState.PAUSED:  # waits for a person: the same command goes on
            sys.stderr.write(f"migrator_run: {job.error or 'the job is paused'}\n")
            return EXIT_PAUSED
        return EXIT_FAILED

    def _endpoint(self, url: str, customer: Customer):
        secret = os.environ.get("MIGRATOR_SMB_PASSWORD") if url.startswith("smb://") else None
        return services.endpoint_get_or_create(url=url, customer=customer, secret=secret)

    def _tick(self, runner: InlineRunner, show: bool):
        """The wait's tick: progress on a terminal, and the end of the wait when the pass
        waits for a person to confirm its deletions (nothing else runs then)."""

        def tick(job: MigrationJob) -> None:
            if show:
                self._progress(job)
            with runner.lock:
                idle = runner.in_flight == 0
            if idle and Pass.objects.filter(pk=job.current_pass_id,
                                            deletes_state=AWAITING).exists():  # fmt: skip
                raise _AwaitingConfirmation(job)

        return tick

    _last_tick = 0.0

    def _progress(self, job: MigrationJob) -> None:
        now = time.monotonic()
        if now - self._last_tick < 0.5:
            return
        self._last_tick = now
        p = selectors.job_progress(job=job)
        width = 30
        filled = int(width * p["fraction"])
        bar = "█" * filled + "░" * (width - filled)
        sys.stderr.write(
            f"\r{bar} {p['done']:,}/{p['seen']:,} files  {p['bytes_done_h']}"
            f"  {p['rate_h']}  {job.state:<22}"
        )
        sys.stderr.flush()

    def _print_summary(self, s: dict) -> None:
        self.stdout.write(
            f"Job {s['job_id']}: {s['state']} in {s['seconds']}s — {s['seen']} files seen, "
            f"{s['copied']} copied, {s['unchanged']} unchanged, {s['excluded']} excluded, "
            f"{s['failed']} failed, {s['pending']} pending; {s['folders_seen']} folders; "
            f"{s['bytes_copied']} bytes copied."
        )
        if s.get("deleted_at_source") or s.get("deletions"):
            by_action = ", ".join(f"{n} {a.replace('_', ' ')}" for a, n in s["deletions"].items())
            self.stdout.write(f"  deleted at source: {s['deleted_at_source']} ({by_action}).")
        if "acl_applied" in s:
            self.stdout.write(
                f"  permissions: {s['acl_applied']} applied, {s['acl_narrowed']} narrowed, "
                f"{s['acl_denied']} with deny entries, {s['acl_unmapped']} with unmapped "
                f"identities; {s['acl_distinct']} distinct ACLs"
            )
        for reason, count in s["failed_by_reason"].items():
            self.stdout.write(f"  failed ({reason}): {count}")
        if s.get("error"):
            self.stdout.write(f"  {s['error']}")


__all__ = ["Command", "CommandError"]


# --- permissions flags --------------------------------------------------------

LDAP_PASSWORD_ENV = "MIGRATOR_LDAP_PASSWORD"
CLI_RULES = {
    "deny_policy": "deny_policy",
    "map_domain": "domain",
    "group_domain": "group_domain",
    "everyone_domain": "everyone_domain",
}
# any of these turns permissions on
CLI_FLAGS = ("permissions", "permissions_only", "identity_map", "directory", *CLI_RULES)


def parse_directory_url(url: str) -> dict[str, str]:
    """ldap[s]://[BIND_DN@]host[:port][/BASE_DN] -> {uri, bind_dn, base_dn}; the bind DN
    (or user@realm, DOMAIN\\user) percent-encoded in the user part, never a password."""
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"--directory must be ldap[s]://[BIND_DN@]host[:port][/BASE_DN]: {url!r}")
    if parts.password is not None:
        raise ValueError(f"put the directory password in {LDAP_PASSWORD_ENV}, not in the URL")
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    return {
        "uri": f"{parts.scheme}://{parts.hostname}{port}",
        "bind_dn": unquote(parts.username or ""),
        "base_dn": unquote(parts.path.lstrip("/")),
    }


@dataclass
class CliPermissions:
    options: dict[str, Any]
    only: bool
    identity_csv: bytes | None
    directory: dict[str, str] | None


def cli_arguments(parser) -> None:
    group = parser.add_argument_group("permissions")
    group.add_argument("--permissions", action="store_true",
                       help="migrate NTFS permissions (automatic identity mapping)")  # fmt: skip
    group.add_argument("--permissions-only", action="store_true",
                       help="re-apply permissions without copying data")  # fmt: skip
    group.add_argument("--deny-policy", choices=[p.value for p in DenyPolicy], default=None)
    group.add_argument("--identity-map", metavar="FILE.csv", default=None,
                       help="identity overrides: source,target,type")  # fmt: skip
    group.add_argument("--directory", metavar="ldap://BIND_DN@host/BASE_DN", default=None,
                       help=f"resolve SIDs here (password from {LDAP_PASSWORD_ENV})")  # fmt: skip
    group.add_argument("--map-domain", default=None, help="users: name@DOMAIN")
    group.add_argument("--group-domain", default=None, help="groups: name@DOMAIN")
    group.add_argument("--everyone-domain", default=None, help="Everyone: the whole DOMAIN")


def cli_prepare(opts: dict, env: dict[str, str]) -> CliPermissions | None:
    """Check the permission flags before anything is created; ValueError in words."""
    if not any(opts.get(k) for k in CLI_FLAGS):
        return None
    raw: dict[str, Any] = {"enabled": True}
    for key, name in CLI_RULES.items():
        if opts.get(key):
            raw[name] = opts[key]
    PermissionOptions.parse(raw)
    data = None
    if opts.get("identity_map"):
        path = opts["identity_map"]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            parse_mapping_csv(data)
        except MappingCSVError as exc:
            raise ValueError(f"{os.path.basename(path)}: {exc}") from exc
    directory = None
    if opts.get("directory"):
        directory = parse_directory_url(opts["directory"])
        password = env.get(LDAP_PASSWORD_ENV, "")
        if directory["bind_dn"] and not password:
            raise ValueError(
                f"--directory binds as {directory['bind_dn']}: set {LDAP_PASSWORD_ENV}"
            )
        directory["bind_password"] = password
        try:
            permissions.directory_check(dict(directory))
        except DirectoryError as exc:
            raise ValueError(f"directory {directory['uri']}: {exc}") from exc
    return CliPermissions(raw, bool(opts.get("permissions_only")), data, directory)


def cli_apply(prepared: CliPermissions, *, job: MigrationJob, source) -> None:
    """Store what cli_prepare checked: the job's options, the source's directory, the CSV."""
    options = {**(job.options or {}), PERMISSIONS: prepared.options}
    services.job_settings_update(job=job, bwlimit=job.bwlimit, options=options)
    if prepared.directory is not None:
        services.endpoint_directory_set(endpoint=source, **prepared.directory)
    if prepared.identity_csv is not None:
        services.identity_overrides_import(job=job, data=prepared.identity_csv)
