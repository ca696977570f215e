from django.urls import path

from . import views

app_name = "api-accounts"

urlpatterns = [
    path("customers/", views.CustomerList.as_view(), name="customers"),
    path("customers/<int:pk>/", views.CustomerDetail.as_view(), name="customer"),
    path("tokens/", views.TokenList.as_view(), name="tokens"),
    path("tokens/<int:pk>/revoke/", views.TokenRevoke.as_view(), name="token_revoke"),
]
