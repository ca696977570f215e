"""The transfer window on the admin's job and agent pool pages: typed as rules
(`mon-fri 08-18 10MB/s; sat,sun closed`), checked with an error in words, shown as a
7 × 24 grid."""

from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join

from migrator.engine.windows import DAYS, cell_text, parse_schedule, zone_of

from . import windows
from .models import AgentPool, MigrationJob, TransferWindow

COLOURS = {"closed": "#9ca3af", "unlimited": "#16a34a", "limited": "#d97706"}


class WindowFormMixin(forms.Form):
    """Two fields for a ModelForm of a job or a pool: the rules and their zone."""

    transfer_window = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Hours when it may copy, and at what rate, in the zone below: rules "
        "separated by ';', a later rule wins, e.g. 'mon-fri 08-18 10MB/s; sat,sun "
        "unlimited; mon-fri 00-06 closed'. Days: * mon tue wed thu fri sat sun, or "
        "ranges; hours HH-HH (end excluded); closed, unlimited or a rate (KB/s, MB/s, "
        "MiB/s…). Empty: always open.",
    )
    window_zone = forms.CharField(
        required=False, initial="UTC", max_length=64,
        help_text="IANA time zone of the hours above, e.g. Europe/Paris.",
    )  # fmt: skip

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        instance = getattr(self, "instance", None)
        if instance is not None and instance.pk:
            text, zone = windows.window_text(instance)
            self.fields["transfer_window"].initial = text
            self.fields["window_zone"].initial = zone

    def clean_transfer_window(self) -> str:
        text = self.cleaned_data.get("transfer_window") or ""
        try:
            parse_schedule(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return text

    def clean_window_zone(self) -> str:
        zone = (self.cleaned_data.get("window_zone") or "UTC").strip()
        try:
            zone_of(zone)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return zone


def window_save(form: forms.Form, owner: MigrationJob | AgentPool) -> None:
    """Write what the form holds (after the job or pool itself is saved)."""
    data = form.cleaned_data
    windows.transfer_window_set(
        owner=owner, text=data.get("transfer_window") or "", zone=data.get("window_zone") or "UTC"
    )


def window_grid(owner: MigrationJob | AgentPool) -> str:
    """The window as a 7 × 24 table: grey closed, green unlimited, amber limited."""
    if not owner.pk:
        return "—"
    field = {"job": owner} if isinstance(owner, MigrationJob) else {"pool": owner}
    window = TransferWindow.objects.filter(**field).first()
    if window is None:
        return "always open, no limit of its own"

    def cell(value) -> tuple[str, str]:
        kind = "closed" if value == 0 else "unlimited" if value is None else "limited"
        return COLOURS[kind], cell_text(value)

    header = format_html_join("", "<th>{}</th>", ((f"{h:02d}",) for h in range(24)))
    rows = format_html_join(
        "",
        "<tr><th>{}</th>{}</tr>",
        (
            (
                day,
                format_html_join(
                    "",
                    '<td title="{} {}:00 {}" style="background:{};width:14px">&nbsp;</td>',
                    (
                        (day, f"{h:02d}", text, colour)
                        for h, (colour, text) in enumerate(map(cell, hours))
                    ),
                ),
            )
            for day, hours in zip(DAYS, window.grid, strict=True)
        ),
    )
    return format_html(
        '<table class="transfer-window"><tr><th>{}</th>{}</tr>{}</table>'
        '<p class="help">grey closed · green unlimited · amber limited (hover for the rate)</p>',
        window.zone, header, rows,
    )  # fmt: skip
