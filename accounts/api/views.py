"""The API's customers (staff) and tokens (staff make, list and revoke them). Thin: parse,
call a selector or a service, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from accounts.selectors import customers_visible_to

from . import services
from .authentication import (
    ApiTokenAuthentication,
    CsrfSessionAuthentication,
    PasswordAuthentication,
)
from .permissions import StaffOnly
from .serializers import ApiTokenCreatedSerializer, ApiTokenSerializer, CustomerSerializer


class CustomerList(generics.ListAPIView):
    """Every customer (support engineers only)."""

    permission_classes = [StaffOnly]
    serializer_class = CustomerSerializer
    ordering = ("name", "id")

    def get_queryset(self):
        return customers_visible_to(self.request.user)


class CustomerDetail(generics.RetrieveAPIView):
    permission_classes = [StaffOnly]
    serializer_class = CustomerSerializer

    def get_queryset(self):
        return customers_visible_to(self.request.user)


class TokenList(generics.ListCreateAPIView):
    """API tokens. Make one with your password (HTTP Basic), a token or the session:
    the answer holds the token, shown this once; only its SHA-256 is kept."""

    authentication_classes = [ApiTokenAuthentication, PasswordAuthentication,
                              CsrfSessionAuthentication]  # fmt: skip
    permission_classes = [StaffOnly]
    serializer_class = ApiTokenSerializer
    ordering = ("-id",)

    def get_queryset(self):
        return ApiToken.objects.select_related("user")

    @extend_schema(request=ApiTokenSerializer, responses={201: ApiTokenCreatedSerializer})
    def post(self, request, *args, **kwargs):
        given = ApiTokenSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        token, plain = services.api_token_create(
            user=given.validated_data.get("user") or request.user,
            name=given.validated_data["name"],
            created_by=request.user,
        )
        token.token = plain
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class TokenRevoke(APIView):
    """Revoke a token: refused from its next request on."""

    permission_classes = [StaffOnly]

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    def post(self, request, pk: int):
        token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk)
        services.api_token_revoke(token=token)
        return Response(ApiTokenSerializer(token).data)
