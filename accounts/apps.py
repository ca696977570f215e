from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Customers and accounts"

    def ready(self) -> None:
        from . import directory, signals  # noqa: F401 - connects the receivers

        signals.connect()
