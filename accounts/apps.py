from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Customers and accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from . import directory, signals  # noqa: F401 - connects the receivers
        from .middleware import directory_checked_at_login

        signals.connect()
        user_logged_in.connect(directory_checked_at_login, dispatch_uid="directory-checked")
