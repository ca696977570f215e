from django.db import models


class Customer(models.Model):
    """A company whose file shares we migrate."""

    name = models.CharField(max_length=200, unique=True)
    max_running_jobs = models.PositiveIntegerField(
        default=4, help_text="Jobs of this customer that may run at once; the rest wait in order."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
