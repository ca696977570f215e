"""The admin of notifications: customers' webhooks (the signing secret write-only), their
delivery log (read-only, with response codes), and each person's email choices (staff
choose theirs here; customer viewers in the portal)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from .models import NotificationPreference, Webhook, WebhookDelivery
from .notifications import NotificationEvent

EVENT_CHOICES = NotificationEvent.choices


class WebhookForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs each delivery (X-Migrator-Signature: sha256=HMAC of the body). "
        "Write-only: leave empty to keep the stored one.",
    )
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event.",
    )

    class Meta:
        model = Webhook
        fields = ["customer", "job", "name", "url", "events", "active"]

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("secret") and not self.instance.has_secret:
            self.add_error("secret", "A new webhook needs a secret to sign its deliveries.")
        return data

    def save(self, commit: bool = True) -> Webhook:
        hook = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            hook.set_secret(self.cleaned_data["secret"])
        if commit:
            hook.save()
        return hook


class DeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ["created_at", "event", "attempt", "state", "status_code", "error",
              "response_excerpt", "next_retry_at"]  # fmt: skip
    readonly_fields = fields
    ordering = ["-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = ["__str__", "customer", "job", "url", "active", "has_secret"]
    list_filter = ["active", "customer"]
    search_fields = ["name", "url", "customer__name"]
    inlines = [DeliveryInline]

    @admin.display(boolean=True, description="secret stored")
    def has_secret(self, obj: Webhook) -> bool:
        return obj.has_secret


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "webhook", "event", "attempt", "state", "status_code",
                    "next_retry_at"]  # fmt: skip
    list_filter = ["state", "event", "status_code"]
    fields = ["webhook", "event", "attempt", "state", "status_code", "response_excerpt",
              "error", "created_at", "sent_at", "next_retry_at", "payload"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class PreferenceForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = NotificationPreference
        fields = ["user", "customer", "job", "events", "email"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    form = PreferenceForm
    list_display = ["user", "customer", "job", "email", "events"]
    list_filter = ["email", "customer"]
    search_fields = ["user__username", "user__email"]

    def get_changeform_initial_data(self, request) -> dict:
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}
