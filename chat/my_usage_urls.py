from __future__ import annotations

from django.urls import path

from chat import dashboard

app_name = "my_usage"

urlpatterns = [
    path("", dashboard.my_usage, name="dashboard"),
    path("export.csv", dashboard.my_usage_export, name="export"),
]
