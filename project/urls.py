from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import JavaScriptCatalog

from accounts import preferences
from project import views

# /admin/login/ is allauth's log-in (its throttles and two-factor), never Django's unthrottled admin form.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]  # on purpose

handler500 = "project.views.server_error"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("i18n/setlang/", preferences.set_language, name="set_language"),
    path("i18n/js/", login_not_required(JavaScriptCatalog.as_view()), name="javascript-catalog"),
    path("favicon.ico", views.favicon),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("settings/profile/", preferences.profile, name="profile"),
    path("settings/keys/", include("tokens.urls")),
    path("settings/theme/", views.theme_set, name="theme-set"),
    path("settings/api-keys/", include("tokens.api_key_urls")),
    path("v1/", include("chat.api_urls")),
    path("settings/usage/", include("chat.my_usage_urls")),
    path("chat/", include("chat.urls")),
    path("usage/", include("chat.usage_urls")),
    path("admin/", admin.site.urls),
]
