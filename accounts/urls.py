from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

# Sign-up, log-in, log-out, password and email flows, two-factor (/accounts/2fa/) and single sign-on are
# django-allauth's, included after these in project/urls.py.
urlpatterns = [
    path("pending/", views.pending, name="pending"),
]
