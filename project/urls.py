from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from project import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("settings/keys/", include("tokens.urls")),
    path("settings/api-keys/", include("tokens.api_key_urls")),
    path("v1/", include("chat.api_urls")),
    path("chat/", include("chat.urls")),
    path("usage/", include("chat.usage_urls")),
    path("admin/", admin.site.urls),
]
