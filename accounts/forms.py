"""Forms of the sign-in pages and of the admin (write-only secrets)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Q

from .choices import DirectoryKind
from .directory import staff_directory
from .models import Customer

# One message for a wrong password, an unknown name, a disabled directory account and a
# deactivated local one: the page must not tell which of them it was.
REFUSED = (
    "That name and password did not match an account that may sign in. Both fields may "
    "be case-sensitive."
)


class SignInForm(AuthenticationForm):
    error_messages = {"invalid_login": REFUSED, "inactive": REFUSED}

    def __init__(self, request=None, *args, **kwargs) -> None:
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Name"
        self.fields["username"].help_text = (
            "Support engineers: your directory name. Customers: your email address, or "
            "name@your-domain for your company's directory."
        )


class CustomerAdminForm(forms.ModelForm):
    directory_bind_password = forms.CharField(
        label="bind password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: leave empty to keep the stored one.",
    )
    clear_directory_bind_password = forms.BooleanField(
        label="remove the stored bind password", required=False
    )

    class Meta:
        model = Customer
        fields = [
            "name", "max_running_jobs", "directory_kind", "directory_uri",
            "directory_start_tls", "directory_ca_file", "directory_bind_dn",
            "directory_user_search_base", "directory_group_search_base",
            "directory_viewer_group", "directory_domains",
        ]  # fmt: skip

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("directory_kind"):
            return data
        required = {
            "directory_uri": "the server URI",
            "directory_user_search_base": "a user search base",
            "directory_viewer_group": "the group whose members become viewers",
            "directory_domains": "at least one sign-in domain",
        }
        for field, what in required.items():
            if not data.get(field):
                self.add_error(field, f"A directory needs {what}.")
        domains = [d.strip().lower() for d in (data.get("directory_domains") or "").split(",")]
        domains = [d for d in domains if d]
        taken = set(staff_directory().get("domains", [])) & set(domains)
        if taken:
            self.add_error("directory_domains", f"{', '.join(sorted(taken))}: staff directory.")
        others = Customer.objects.exclude(pk=self.instance.pk).exclude(
            directory_kind=DirectoryKind.NONE
        )
        query = Q()
        for domain in domains:
            query |= Q(directory_domains__icontains=domain)
        if domains:
            for other in others.filter(query):
                clash = set(other.domain_names) & set(domains)
                if clash:
                    self.add_error(
                        "directory_domains",
                        f"{', '.join(sorted(clash))}: already the domain of {other.name}.",
                    )
        return data

    def save(self, commit: bool = True) -> Customer:
        customer = super().save(commit=False)
        if self.cleaned_data.get("clear_directory_bind_password"):
            customer.directory_bind_password_encrypted = ""
        elif self.cleaned_data.get("directory_bind_password"):
            customer.set_directory_bind_password(self.cleaned_data["directory_bind_password"])
        if commit:
            customer.save()
        return customer


class InvitationAdminForm(forms.Form):
    email = forms.EmailField()
    customer = forms.ModelChoiceField(queryset=Customer.objects.all())
