from __future__ import annotations

from django.urls import path, re_path

from chat import api

app_name = "api"

urlpatterns = [
    path("tokens", api.token_create, name="token-create"),
    path("models", api.model_list, name="model-list"),
    path("chat/completions", api.chat_completions, name="chat-completions"),
    re_path(r"^(?P<path>.*)$", api.route_not_found),
]
