from __future__ import annotations

from django.urls import path

from tokens import api_key_views

app_name = "api_keys"

urlpatterns = [
    path("", api_key_views.api_key_list, name="api-key-list"),
    path("<int:pk>/revoke/", api_key_views.api_key_revoke, name="api-key-revoke"),
]
