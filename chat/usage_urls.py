from __future__ import annotations

from django.urls import path

from chat import dashboard, people

app_name = "usage"

urlpatterns = [
    path("", dashboard.usage_dashboard, name="dashboard"),
    path("export.csv", dashboard.usage_export, name="export"),
    path("users/", people.user_list, name="user-list"),
    path("users/<int:pk>/", people.user_detail, name="user-detail"),
    path("users/<int:pk>/approve/", people.user_approve, name="user-approve"),
    path("users/<int:pk>/reject/", people.user_reject, name="user-reject"),
    path("users/<int:pk>/active/", people.user_set_active, name="user-set-active"),
]
