"""The admin of on-premises agents: pools, their one-time enrolment codes, the agents
(online or not, what they hold, how fast they go) and revoking one."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from . import services
from .admin_windows import WindowFormMixin, window_grid, window_save
from .agent_api import agents_online_since
from .models import Agent, AgentPool
from .selectors import human_bytes


class AgentInline(admin.TabularInline):
    model = Agent
    extra = 0
    can_delete = False
    fields = ["name", "online", "last_seen", "version", "revoked_at"]
    readonly_fields = fields

    @admin.display(description="online")
    def online(self, obj: Agent) -> str:
        return _online(obj)


def _online(agent: Agent) -> str:
    if agent.revoked_at is not None:
        return "revoked"
    if agent.last_seen and agent.last_seen >= agents_online_since():
        return "online"
    return "offline"


def held_by(agent: Agent) -> list[dict]:
    """What the agent holds: each of its processes' batch or scan (an older agent's single
    status: its one holding)."""
    status = agent.status or {}
    if "held" in status:
        return [h for h in status["held"] if isinstance(h, dict)]
    held = status.get("holding")
    return [held] if isinstance(held, dict) and held else []


def _doing(held: dict) -> str:
    if "batch" in held:
        return f"holds batch {held['batch']}"
    return f"scans pass {held['scan']}" if "scan" in held else ""


def _holds(held: dict) -> str:
    if "batch" in held:
        return f"batch {held['batch']} ({held.get('files', '?')} files)"
    return f"the scan of pass {held['scan']}" if "scan" in held else ""


def pool_health(pool: AgentPool) -> str:
    """'site-a: 2 of 3 agents online (host1 holds batch 12, host2 idle); host3 offline
    since …', for the job page."""
    agents = list(pool.agents.filter(revoked_at__isnull=True).order_by("name"))
    if not agents:
        return f"{pool.name}: no agent enrolled yet: create an enrolment code on the pool."
    online = [a for a in agents if _online(a) == "online"]
    parts = []
    for a in agents:
        if a in online:
            words = [_doing(h) for h in held_by(a)]
            doing = ", ".join(w for w in words if w) or "idle"
            parts.append(f"{a.name} {doing}")
        else:
            seen = (
                timezone.localtime(a.last_seen).strftime("%Y-%m-%d %H:%M")
                if a.last_seen
                else "never"
            )
            parts.append(f"{a.name} offline (last seen {seen})")
    return f"{pool.name}: {len(online)} of {len(agents)} agents online — " + "; ".join(parts)


class AgentPoolForm(WindowFormMixin, forms.ModelForm):
    class Meta:
        model = AgentPool
        fields = ["customer", "name"]


@admin.register(AgentPool)
class AgentPoolAdmin(admin.ModelAdmin):
    form = AgentPoolForm
    list_display = ["name", "customer", "agents_online", "created_at"]
    list_filter = ["customer"]
    fields = ["customer", "name", "transfer_window", "window_zone", "window_grid"]
    readonly_fields = ["window_grid"]
    inlines = [AgentInline]
    actions = ["create_enrollment_code"]

    @admin.display(description="agents online")
    def agents_online(self, obj: AgentPool) -> str:
        agents = list(obj.agents.all())
        online = sum(1 for a in agents if _online(a) == "online")
        return f"{online} of {len(agents)}"

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.agent_pool_create(customer=obj.customer, name=obj.name,
                                             user=request.user)  # fmt: skip
        obj.pk = created.pk

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        window_save(form, form.instance)

    @admin.display(description="transfer window")
    def window_grid(self, obj: AgentPool) -> str:
        return window_grid(obj)

    @admin.action(description="Create a one-time enrolment code")
    def create_enrollment_code(self, request, queryset) -> None:
        for pool in queryset:
            code = services.enrollment_code_create(pool=pool, user=request.user)
            expires = timezone.localtime(timezone.now() + services.ENROLLMENT_TTL)
            self.message_user(
                request,
                format_html(
                    "{}: run <code>python -m migrator.agent enroll --server {} --code {}</code> "
                    "on the agent's machine. The code works once, until {}; it is shown only "
                    "now.",
                    pool.name, request.build_absolute_uri("/").rstrip("/"), code,
                    expires.strftime("%Y-%m-%d %H:%M"),
                ),
                messages.SUCCESS,
            )  # fmt: skip


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "pool", "online", "last_seen", "version", "host", "free_disk",
                    "throughput", "holding"]  # fmt: skip
    list_filter = ["pool"]
    readonly_fields = ["pool", "name", "created_at", "last_seen", "version", "status",
                       "revoked_at"]  # fmt: skip
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # agents join with an enrolment code

    @admin.display(description="online")
    def online(self, obj: Agent) -> str:
        return _online(obj)

    @admin.display(description="host")
    def host(self, obj: Agent) -> str:
        return str((obj.status or {}).get("host") or "—")

    @admin.display(description="free disk")
    def free_disk(self, obj: Agent) -> str:
        free = (obj.status or {}).get("free_disk")  # bytes free where the agent spools
        return human_bytes(free) if isinstance(free, int | float) else "—"

    @admin.display(description="throughput")
    def throughput(self, obj: Agent) -> str:
        rate = (obj.status or {}).get("bytes_per_s")  # all its processes' summed
        return f"{rate / 1e6:.1f} MB/s" if isinstance(rate, int | float) and rate else "—"

    @admin.display(description="holds")
    def holding(self, obj: Agent) -> str:
        words = [_holds(h) for h in held_by(obj)]
        return "; ".join(w for w in words if w) or "—"

    @admin.action(description="Revoke (its token stops working; its work goes to the others)")
    def revoke(self, request, queryset) -> None:
        for agent in queryset:
            services.agent_revoke(agent=agent, user=request.user)
        self.message_user(request, f"Revoked {queryset.count()} agent(s).", messages.SUCCESS)
