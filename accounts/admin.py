"""Customers (with their optional directory, bind password write-only), memberships,
invitations, users' account sources, and the read-only audit log with its CSV."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from migrator.web.csv import csv_filename, csv_response

from . import directory, services
from .api import services as api_services
from .forms import CustomerAdminForm, InvitationAdminForm
from .models import ApiToken, AuditEntry, Customer, Invitation, Membership, Profile


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "source", "created_at"]
    readonly_fields = ["source", "created_at"]
    autocomplete_fields = ["user"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    form = CustomerAdminForm
    list_display = ["name", "max_running_jobs", "directory_kind", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    actions = ["test_directory"]
    fieldsets = [
        (None, {"fields": ["name", "max_running_jobs"]}),
        (
            "Directory (optional: the customer's own AD or LDAP for its viewers)",
            {
                "classes": ["collapse"],
                "fields": [
                    "directory_kind",
                    "directory_uri",
                    "directory_start_tls",
                    "directory_ca_file",
                    "directory_bind_dn",
                    "directory_bind_password",
                    "clear_directory_bind_password",
                    "directory_user_search_base",
                    "directory_group_search_base",
                    "directory_viewer_group",
                    "directory_domains",
                ],  # fmt: skip
            },
        ),
    ]

    @admin.action(description="Test directory connection")
    def test_directory(self, request, queryset) -> None:
        for customer in queryset:
            usable, said = directory.customer_directory_test(customer)
            level = messages.SUCCESS if usable else messages.ERROR
            verdict = "directory OK" if usable else "directory cannot be used"
            self.message_user(request, f"{customer.name}: {verdict}. {' '.join(said)}", level)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "customer", "source", "created_at"]
    list_filter = ["source", "customer"]
    search_fields = ["user__username", "customer__name"]
    autocomplete_fields = ["user", "customer"]
    list_select_related = ["user", "customer"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Staff invite a customer viewer by email; the invitee chooses a password once."""

    list_display = ["email", "customer", "invited_by", "created_at", "sent_at", "accepted_at"]
    list_filter = ["customer"]
    search_fields = ["email"]
    list_select_related = ["customer", "invited_by"]
    readonly_fields = list_display
    actions = ["resend"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def add_view(self, request, form_url="", extra_context=None):
        form = InvitationAdminForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                invitation = services.invitation_create(
                    email=form.cleaned_data["email"],
                    customer=form.cleaned_data["customer"],
                    invited_by=request.user,
                    request=request,
                )
            except services.InvitationError as exc:
                form.add_error("email", str(exc))
            else:
                self.message_user(
                    request, f"Invitation sent to {invitation.email}.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:accounts_invitation_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Invite a customer viewer",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/accounts/invitation/add.html", context)

    @admin.action(description="Send the selected invitations again")
    def resend(self, request, queryset) -> None:
        for invitation in queryset.select_related("user", "customer"):
            services.invitation_send(invitation=invitation, request=request)
        self.message_user(request, f"Sent {queryset.count()} invitation(s) again.")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: nobody edits or deletes the audit log, not even a superuser here."""

    list_display = ["at", "username", "ip", "action", "object_type", "object_repr",
                    "customer_name", "detail"]  # fmt: skip
    list_filter = ["action", "object_type", "customer_name"]
    search_fields = ["username", "object_repr", "ip", "detail"]
    date_hierarchy = "at"
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", view, name="accounts_auditentry_csv"), *super().get_urls()]

    def export_csv(self, request):
        """The changelist's rows, with its filters and search, as a streamed CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).values_list(
            "at", "username", "ip", "action", "object_type", "object_id", "object_repr",
            "customer_name", "detail",
        )  # fmt: skip
        header = ["at", "user", "ip", "action", "object type", "object id", "object",
                  "customer", "detail"]  # fmt: skip
        return csv_response(
            csv_filename("audit"),
            header,
            ((at.isoformat(), *rest) for at, *rest in rows.iterator(chunk_size=2000)),
        )

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "csv_url": reverse("admin:accounts_auditentry_csv") + "?" + request.GET.urlencode(),
        }
        return super().changelist_view(request, extra_context)


# --- users: where their password is checked and which customers they see ---------------

User = get_user_model()


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    fields = ["source", "directory_customer", "last_directory_login"]
    readonly_fields = fields
    verbose_name_plural = "account source"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class UserMembershipInline(MembershipInline):
    fields = ["customer", "source", "created_at"]
    autocomplete_fields = ["customer"]


if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class MigratorUserAdmin(UserAdmin):
    inlines = [ProfileInline, UserMembershipInline]
    list_display = ["username", "email", "is_staff", "is_superuser", "is_active", "last_login"]


# --- API tokens: made here (shown once), listed with when they were last used, revoked -----


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    fields = ["user", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a token is made or revoked, never edited

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [*self.readonly_fields, "user", "name"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        token, plain = api_services.api_token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"], created_by=request.user
        )
        obj.pk = token.pk
        obj._state.adding = False
        request._migrator_new_token = (token, plain)

    def response_add(self, request, obj, post_url_continue=None):
        """The token, on this one page, never again (never in a message: those are
        stored in the session or a cookie until read)."""
        token, plain = request._migrator_new_token
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "token": token,
            "plain": plain,
            "opts": self.model._meta,
        }
        # a template file, not one compiled at import: that loaded every tag library
        # (DRF's pulls in psycopg and requests) into every process, migrator_run's too
        return TemplateResponse(request, "admin/accounts/apitoken/created.html", context)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            api_services.api_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)
