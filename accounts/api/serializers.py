from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from accounts.models import ApiToken, Customer


class CustomerSerializer(serializers.ModelSerializer):
    has_directory = serializers.BooleanField(read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "name", "max_running_jobs", "created_at", "has_directory"]


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        required=False,
        help_text="Whose token (a username; default: yours). A customer viewer's token "
        "reads that customer's jobs only.",
    )
    active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "user", "prefix", "created_at", "last_used_at", "revoked_at",
                  "active"]  # fmt: skip
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The token itself: shown this once, never again."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
