"""API tokens: made (the token returned once, only its SHA-256 kept), looked up by the
token a request presents, revoked. Nothing here logs or stores a token itself."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiToken

TOKEN_PREFIX = "mgr_"  # noqa: S105 - the start every token shares, not a secret
LAST_USED_EVERY = timedelta(minutes=1)  # at most one write per token per minute


def token_digest(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def api_token_create(*, user, name: str, created_by=None) -> tuple[ApiToken, str]:
    """A new token for `user`: the row and the token, which is never shown again."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100] or "API token",
        key_hash=token_digest(plain),
        prefix=plain[:12],
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )
    return token, plain


def api_token_revoke(*, token: ApiToken) -> None:
    """Refused from the next request on; the row is kept for the record."""
    ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])


def api_token_use(*, plain: str) -> ApiToken | None:
    """The active token `plain` is, with its user, or None; notes when it was used."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_digest(plain), revoked_at=None)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
