"""Template context for the portal: the customers a viewer belongs to (for the header)."""

from accounts.selectors import customers_visible_to, sees_all_customers


def portal(request) -> dict:
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated) or sees_all_customers(user):
        return {}
    return {
        "portal_customers": lambda: list(customers_visible_to(user).values_list("name", flat=True))
    }
