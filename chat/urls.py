from __future__ import annotations

from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("models/", views.model_list, name="model-list"),
    path("send/", views.conversation_send, name="conversation-send-new"),
    path("<int:pk>/", views.conversation_detail, name="conversation-detail"),
    path("<int:pk>/send/", views.conversation_send, name="conversation-send"),
    path("<int:pk>/edit/", views.conversation_edit, name="conversation-edit"),
    path("<int:pk>/regenerate/", views.conversation_regenerate, name="conversation-regenerate"),
    path("<int:pk>/continue/", views.conversation_continue, name="conversation-continue"),
    path("<int:pk>/rename/", views.conversation_rename, name="conversation-rename"),
    path("<int:pk>/system-prompt/", views.conversation_system_prompt, name="conversation-system-prompt"),
    path("<int:pk>/delete/", views.conversation_delete, name="conversation-delete"),
    path("<int:pk>/versions/", views.message_select, name="message-select"),
    path("<int:pk>/export.md", views.conversation_export, {"fmt": "md"}, name="conversation-export-markdown"),
    path("<int:pk>/export.json", views.conversation_export, {"fmt": "json"}, name="conversation-export-json"),
    path("messages/<int:pk>/events/", views.message_events, name="message-events"),
    path("messages/<int:pk>/stop/", views.message_stop, name="message-stop"),
]
