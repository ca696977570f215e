"""Authentication backends, in the order settings.AUTHENTICATION_BACKENDS lists them:

1. ThrottleBackend: django-axes; refuses a locked-out user or address before anything else.
2. LocalBackend: local accounts (customer viewers invited by email, the demo admin).
3. StaffDirectoryBackend: support engineers from the staff directory (environment).
4. CustomerDirectoryBackend: viewers from a customer's own directory (Customer row).
5. RoleBackend: authenticates nobody; grants support engineers their admin permissions.

Each directory backend answers only for the logins it serves (accounts.directory), finds
the user by search-bind, names the Django user after the directory's own attribute
(sAMAccountName / uid, lower-cased) so every spelling is one user, refuses a Django user
that belongs to another source, and refreshes roles and memberships at each login.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import transaction
from django.utils import timezone
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import LDAPGroupQuery

from . import directory
from .choices import AccountSource, MembershipSource
from .ldap_config import AD, LOGIN_ATTRS
from .models import Customer, Membership, Profile

log = logging.getLogger(__name__)


def account_source(user) -> str:
    profile = Profile.objects.filter(user_id=user.pk).only("source").first() if user.pk else None
    return profile.source if profile else AccountSource.LOCAL


class ThrottleBackend(AxesStandaloneBackend):
    """django-axes, for logins that come with a request (every web login does). Calls
    without one (scripts, the test client's login()) are not throttled."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LocalBackend(ModelBackend):
    """Django's own passwords, for local accounts only; names match case-insensitively."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        User = get_user_model()
        username = kwargs.get(User.USERNAME_FIELD, username)
        if not username or password is None:
            return None
        name = username.strip()
        users = list(User._default_manager.filter(username__iexact=name)[:2])
        user = users[0] if len(users) == 1 else next((u for u in users if u.username == name), None)
        if user is None:
            User().set_password(password)  # same time as a wrong password (Django's defence)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and account_source(user) == AccountSource.LOCAL


@dataclass
class Roles:
    staff: bool = False
    superuser: bool = False
    customer: Customer | None = None

    @property
    def any(self) -> bool:
        return self.staff or self.superuser or self.customer is not None


class _DirectoryBackend(LDAPBackend):
    source: str = ""
    is_staff_directory = False

    # --- to be provided by the two directories ---
    def prepare(self, login: directory.Login) -> bool:
        """Load this directory's settings if it serves `login`; False if it does not."""
        raise NotImplementedError

    def kind(self) -> str:
        raise NotImplementedError

    def django_username(self, login_value: str) -> str:
        raise NotImplementedError

    def roles_of(self, ldap_user) -> Roles:
        raise NotImplementedError

    def owns(self, profile: Profile | None) -> bool:
        raise NotImplementedError

    # --- the flow ---
    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        login = directory.parse_login(username)
        if not login.name or not self.prepare(login):
            return None
        # AD finds name@domain by userPrincipalName, anything else by sAMAccountName / uid
        term = login.typed if (self.kind() == AD and login.upn_form) else login.name
        return super().authenticate(request, username=term, password=password)

    def get_or_build_user(self, username, ldap_user):
        """After a successful bind: name the user after the directory, check who owns that
        name, and decide the roles before anything is saved."""
        User = self.get_user_model()
        try:
            value = ldap_user.attrs[LOGIN_ATTRS[self.kind()]][0]
        except (TypeError, LookupError, IndexError):
            raise ldap_user.AuthenticationFailed("the entry has no login attribute")
        name = self.django_username(value.lower())
        user = User.objects.filter(username__iexact=name).first()
        profile = Profile.objects.filter(user=user).first() if user else None
        if user is not None and not self.owns(profile):
            log.warning("directory login refused: %s belongs to another account source", name)
            raise ldap_user.AuthenticationFailed("the Django user belongs to another source")
        roles = self.roles_of(ldap_user)
        if not roles.any:
            if user is not None:
                self.revoke(user)
            raise ldap_user.AuthenticationFailed("member of no mapped group")
        built = user is None
        if built:
            user = User(username=name)
        user.is_staff = roles.staff or roles.superuser
        user.is_superuser = roles.superuser
        ldap_user.migrator_roles = roles
        return user, built

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        if self.is_staff_directory:
            directory.mark_directory_available()
        self.refresh(user, ldap_user.migrator_roles)
        return user if user.is_active else None

    @transaction.atomic
    def refresh(self, user, roles: Roles) -> None:
        Profile.objects.update_or_create(
            user=user,
            defaults={
                "source": self.source,
                "directory_customer": roles.customer,
                "last_directory_login": timezone.now(),
            },
        )
        stale = Membership.objects.filter(user=user, source=MembershipSource.DIRECTORY)
        if roles.customer is not None:
            stale = stale.exclude(customer=roles.customer)
            Membership.objects.get_or_create(
                user=user,
                customer=roles.customer,
                defaults={"source": MembershipSource.DIRECTORY},
            )
        stale.delete()

    def recheck(self, user) -> bool | None:
        """Is `user` still let in by this directory (its account there, its groups)? Asked
        with the service account, no password. None when the directory could not say
        (unreachable): the caller keeps what it had. A user it no longer lets in loses
        the roles and memberships it gave."""
        login = directory.parse_login(user.username)
        if not login.name or not self.prepare(login):
            return None
        term = login.typed if (self.kind() == AD and login.upn_form) else login.name
        failed: list[Exception] = []

        def on_error(sender, context, exception, **kwargs) -> None:
            failed.append(exception)

        ldap_error.connect(on_error)
        try:
            found = self.populate_user(term)
        finally:
            ldap_error.disconnect(on_error)
        if failed:
            return None
        if found is None:  # gone from the directory, or in none of the mapped groups
            self.revoke(user)
            return False
        return True

    def revoke(self, user) -> None:
        """Removed from the directory's groups: nothing is left to the Django user."""
        get_user_model().objects.filter(pk=user.pk).update(is_staff=False, is_superuser=False)
        Membership.objects.filter(user=user, source=MembershipSource.DIRECTORY).delete()

    def _member(self, ldap_user, group_dn: str) -> bool:
        return bool(group_dn) and LDAPGroupQuery(group_dn).resolve(ldap_user)


class StaffDirectoryBackend(_DirectoryBackend):
    """Support engineers and superusers, from the staff directory's groups."""

    source = AccountSource.STAFF_DIRECTORY
    is_staff_directory = True

    def prepare(self, login: directory.Login) -> bool:
        return directory.serves_staff(login)

    def kind(self) -> str:
        return directory.staff_directory().get("kind", AD)

    def django_username(self, login_value: str) -> str:
        return login_value

    def owns(self, profile: Profile | None) -> bool:
        return profile is not None and profile.source == self.source

    def roles_of(self, ldap_user) -> Roles:
        conf = directory.staff_directory()
        superuser = self._member(ldap_user, conf.get("superuser_group", ""))
        staff = superuser or self._member(ldap_user, conf.get("staff_group", ""))
        return Roles(staff=staff, superuser=superuser)


class CustomerDirectoryBackend(_DirectoryBackend):
    """Customer viewers from a customer's own directory, for names in its domains."""

    source = AccountSource.CUSTOMER_DIRECTORY
    customer: Customer | None = None

    def prepare(self, login: directory.Login) -> bool:
        customer = directory.customer_for(login)
        if customer is None or not customer.has_directory:
            return False
        self.customer = customer
        self.settings = directory.customer_ldap_settings(customer)
        return True

    def kind(self) -> str:
        return self.customer.directory_kind if self.customer else AD

    def django_username(self, login_value: str) -> str:
        return f"{login_value}@{self.customer.domain_names[0]}"

    def owns(self, profile: Profile | None) -> bool:
        return (
            profile is not None
            and profile.source == self.source
            and profile.directory_customer_id == self.customer.pk
        )

    def roles_of(self, ldap_user) -> Roles:
        group = self.customer.directory_viewer_group
        return Roles(customer=self.customer if self._member(ldap_user, group) else None)


# --- permissions of roles ---------------------------------------------------------------

ALL = frozenset({"view", "add", "change", "delete"})
VIEW = frozenset({"view"})
# What a support engineer (is_staff) may do in the admin, per app and model. Superusers
# may do everything anyway; customer viewers never reach the admin.
STAFF_PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    "jobs": {"*": ALL},
    "reports": {"*": ALL},
    "accounts": {
        "customer": ALL,
        "membership": ALL,
        "invitation": frozenset({"view", "add", "delete"}),
        "auditentry": VIEW,
        "profile": VIEW,
    },
    "axes": {
        "accessattempt": frozenset({"view", "delete"}),
        "accesslog": VIEW,
        "accessfailurelog": VIEW,
    },
    "auth": {"user": VIEW},
    "django_q": {"*": VIEW},
}


class RoleBackend:
    """Grants support engineers the permissions of their role, defined here in code."""

    def authenticate(self, request, **credentials):
        return None

    def get_user(self, user_id):
        return None

    def has_perm(self, user, perm: str, obj=None) -> bool:
        if not (user.is_active and user.is_staff):
            return False
        app_label, _, codename = perm.partition(".")
        action, _, model = codename.partition("_")
        models = STAFF_PERMISSIONS.get(app_label, {})
        return action in models.get(model, models.get("*", frozenset()))

    def has_module_perms(self, user, app_label: str) -> bool:
        return bool(user.is_active and user.is_staff and app_label in STAFF_PERMISSIONS)
