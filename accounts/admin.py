from django.contrib import admin

from .models import Customer


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "max_running_jobs", "created_at"]
    search_fields = ["name"]
