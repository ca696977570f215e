"""django-q2 entry points: take ids, call a service or the database sink. Nothing else
lives here."""

from __future__ import annotations

from . import continuous, services, sink


def scan_pass(pass_id: int) -> None:
    sink.pass_scan(pass_id=pass_id)


def copy_batch(batch_id: int) -> None:
    sink.batch_copy(batch_id=batch_id)


def apply_agent_acls(batch_id: int, lease: str, body: dict) -> None:
    # the agent's post itself (outcomes and ACL plans): nothing of it is stored until
    # the object ACLs are set and the batch recorded with them
    from . import agent_api

    agent_api.agent_acls_apply(batch_id=batch_id, token=lease, body=body)


def delta_check(pass_id: int, token: str) -> None:
    # an agent's catch-up pass: the destination listed by the server, then the scan done
    from . import agent_api

    agent_api.scan_done_checked(pass_id=pass_id, token=token)


def finish_pass(pass_id: int) -> None:
    services.pass_finish(pass_id=pass_id)


def apply_deletions(pass_id: int) -> None:
    from . import deletions

    deletions.deletions_apply(pass_id=pass_id)


def permissions_manifest(pass_id: int) -> None:
    sink.permissions_manifest_write(pass_id=pass_id)


def customer_dispatch(customer_id: int) -> None:
    services.customer_dispatch(customer_id=customer_id)


def reap_leases() -> dict[str, int]:
    counts = services.leases_reap()
    # continuous mode's runners whose lease lapsed (or whose job's first pass just
    # finished) are sent again
    counts["continuous"] = continuous.continuous_due()
    return counts


def continuous_run(job_id: int) -> None:
    continuous.continuous_run(job_id=job_id)


def notify_event(job_id: int, event: str, detail: dict) -> None:
    from . import notifications

    notifications.notification_send(job_id=job_id, event=event, detail=detail)


def deliver_webhook(delivery_id: int) -> None:
    from . import notifications

    notifications.webhook_deliver(delivery_id=delivery_id)


def notifications_due() -> dict[str, int]:
    # every minute (migration 0016): webhook retries whose time has come, agents silent
    from . import notifications

    return {
        "webhook_retries": notifications.webhook_retries_due(),
        "agents_offline": notifications.agents_offline_check(),
    }
