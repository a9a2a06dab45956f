from __future__ import annotations

from django.urls import path

from tokens import views

app_name = "tokens"

urlpatterns = [
    path("", views.credential_list, name="credential-list"),
    path("<uuid:pk>/", views.credential_detail, name="credential-detail"),
    path("<uuid:pk>/replace/", views.credential_replace, name="credential-replace"),
    path("<uuid:pk>/check/", views.credential_check, name="credential-check"),
    path("<uuid:pk>/expiry/", views.credential_expiry, name="credential-expiry"),
    path("<uuid:pk>/default/", views.credential_default, name="credential-default"),
    path("<uuid:pk>/delete/", views.credential_delete, name="credential-delete"),
]
