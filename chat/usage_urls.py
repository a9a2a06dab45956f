from __future__ import annotations

from django.urls import path

from chat import dashboard

app_name = "usage"

urlpatterns = [
    path("", dashboard.usage_dashboard, name="dashboard"),
    path("export.csv", dashboard.usage_export, name="export"),
]
