from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chat import services
from chat.forms import RenameForm
from chat.models import Conversation


def _get_conversation(request: HttpRequest, pk: int) -> Conversation:
    conversation = Conversation.objects.filter(pk=pk, user=request.user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _chat_ctx(request: HttpRequest, conversation: Conversation | None) -> dict:
    credentials = list(request.user.credentials.all())
    return {
        "conversation": conversation,
        "chat_messages": conversation.messages.all() if conversation else [],
        "conversations": request.user.conversations.all()[:100],
        "credentials": credentials,
        "default_model": settings.DEFAULT_MODEL,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/conversation_detail.html", _chat_ctx(request, None))


def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(request, pk)
    return render(request, "chat/conversation_detail.html", _chat_ctx(request, conversation))


@require_POST
async def conversation_send(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    user = await request.auser()
    try:
        prepared = await sync_to_async(services.reply_prepare)(
            user=user,
            conversation_id=pk,
            text=request.POST.get("message", ""),
            model=request.POST.get("model", "").strip()[:100],
            credential_id=request.POST.get("credential") or None,
        )
    except services.ChatRefusal as refusal:
        body = {"error": refusal.message, "redirect": refusal.redirect, "retry_after": refusal.retry_after}
        response = JsonResponse(body, status=refusal.status)
        if refusal.retry_after:
            response["Retry-After"] = str(refusal.retry_after)
        return response
    return StreamingHttpResponse(
        services.conversation_reply(prepared),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


@require_POST
def conversation_rename(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(request, pk)
    form = RenameForm(request.POST, instance=conversation)
    if form.is_valid():
        form.save()
    else:
        messages.error(request, "Give the conversation a title of at most 200 characters.")
    return redirect("chat:conversation-detail", pk=conversation.pk)


@require_POST
def conversation_delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(request, pk)
    conversation.delete()
    messages.success(request, f"Deleted “{conversation}”.")
    return redirect("chat:index")
