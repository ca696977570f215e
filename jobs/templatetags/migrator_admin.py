"""Admin template helpers: is any worker cluster alive?"""

from django import template

register = template.Library()


@register.simple_tag
def worker_clusters_alive() -> bool:
    """django-q2 keeps each running cluster's stats in the shared cache."""
    from django_q.status import Stat

    try:
        return bool(Stat.get_all())
    except Exception:  # a cache that cannot be read must not break every admin page
        return False
