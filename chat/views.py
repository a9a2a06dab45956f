from __future__ import annotations

import asyncio
from functools import partial

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.models import AuthenticatedHttpRequest
from chat import export, relay, services
from chat.forms import RenameForm, SystemPromptForm
from chat.models import Conversation, Message, Role, State, UsageRecord
from chat.services import usage_summary
from chat.sse import EventStreamResponse
from project.threads import in_thread
from tokens.provider import ProviderError
from tokens.services import CredentialError, credential_for_user


def _get_conversation(request: AuthenticatedHttpRequest, pk: int) -> Conversation:
    conversation = Conversation.objects.filter(pk=pk, user=request.user).first()
    if conversation is None:
        raise Http404(_("No such conversation."))
    return conversation


def _chat_ctx(request: AuthenticatedHttpRequest, conversation: Conversation | None) -> dict:
    query = request.GET.get("q", "").strip()[:200]
    conversations = request.user.conversations.all()
    if query:
        conversations = conversations.matching(query)
    credentials = list(request.user.credentials.all())
    default_model = next((c.default_model for c in credentials if c.is_default), "")  # e.g. an Azure deployment
    thread = conversation.messages.thread() if conversation else []
    usage = UsageRecord.objects.per_message([m.pk for m in thread if m.role == Role.ASSISTANT])
    for message in thread:
        message.usage = usage_summary(usage[message.pk]) if message.pk in usage else None  # this version's own
    return {
        "conversation": conversation,
        "chat_messages": thread,
        "conversations": conversations[:200],
        "query": query,
        "credentials": credentials,
        "model": (conversation and conversation.model) or default_model or settings.DEFAULT_MODEL,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }


def index(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "chat/conversation_detail.html", _chat_ctx(request, None))


def conversation_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(request, pk)
    return render(request, "chat/conversation_detail.html", _chat_ctx(request, conversation))


def _whole_number(raw: str) -> int | None:
    """`raw` as a whole number if it is one in ASCII digits that fits a bigint, else None.

    str.isdigit() alone also passes "²" and other digits int() refuses, and any length (int() refuses 4,300+ digits).
    """
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _message_id(request: AuthenticatedHttpRequest) -> int | None:
    return _whole_number(request.POST.get("message_id", ""))


async def _stream_reply(request: AuthenticatedHttpRequest, pk: int | None, mode: str) -> HttpResponseBase:
    """Check the request, start the reply and save the user's turn, in one hop to the request's thread.

    The checks run first and write nothing but the conversation's lease (with the reply's model); as soon as they
    pass, the upstream call starts on the event loop while the same thread saves the turn (`services.reply_record`).
    Nothing is streamed to the browser before the turn is saved; if saving fails, the upstream call is closed and
    the browser hears so, with the text still in its box (chat.relay._generate).
    """
    plan_reply = partial(
        services.reply_plan,
        # LoginRequiredMiddleware has already loaded the user; request.auser() would fetch it again.
        user=request.user,
        conversation_id=pk,
        text=request.POST.get("message", ""),
        model=request.POST.get("model", "").strip()[:200],
        credential_id=request.POST.get("credential") or None,
        system_prompt=request.POST.get("system_prompt", "")[:8000],
        mode=mode,
        message_id=_message_id(request),
    )
    try:
        if not relay.replies_run_here():  # a sync server's loop: the reply saves the turn on its own loop
            return _event_stream(relay.reply_start(await in_thread(plan_reply, request=True)()).follow(0))
        loop = asyncio.get_running_loop()
        checked: asyncio.Future[services.ReplyPlan] = loop.create_future()

        def check_then_record() -> services.PreparedReply:
            plan = plan_reply()
            loop.call_soon_threadsafe(checked.set_result, plan)
            return services.reply_record(plan)

        recording = asyncio.ensure_future(in_thread(check_then_record, request=True)())
        try:
            await asyncio.wait([checked, recording], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The browser left during the checks: once they pass the reply runs all the same, as after a closed
            # tab, so a saved turn and the lease are never left without it.
            checked.add_done_callback(lambda plan: relay.reply_start(plan.result(), recording))
            raise
        if not checked.done():
            recording.result()  # refused (ChatRefusal) or failed before anything was written
        return _event_stream(relay.reply_start(checked.result(), recording).follow(0))
    except services.ChatRefusal as refusal:
        body = {"error": refusal.message, "redirect": refusal.redirect, "retry_after": refusal.retry_after}
        response = JsonResponse(body, status=refusal.status)
        if refusal.retry_after:
            response["Retry-After"] = str(refusal.retry_after)
        return response


def _event_stream(events) -> EventStreamResponse:
    return EventStreamResponse(events)


def _owned_reply(user, pk: int) -> Message:
    message = (
        Message.objects.select_related("conversation")
        .filter(pk=pk, role=Role.ASSISTANT, conversation__user=user)
        .first()
    )
    if message is None:
        raise Http404("No such message.")
    return message


def _offset(request: AuthenticatedHttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("offset") or "0"
    return _whole_number(raw) or 0


@require_GET
async def message_events(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """The events of a reply from Last-Event-ID (or ?offset=) on, live while it runs on any web process."""
    message = await in_thread(_owned_reply, request=True)(request.user, pk)
    offset = _offset(request)
    running = relay.running(message.pk)
    if running is not None:
        return _event_stream(running.follow(offset))
    if message.state != State.STREAMING:
        return _event_stream(relay.follow_saved(message, offset))
    return _event_stream(relay.follow_elsewhere(message, offset))


@require_POST
async def message_stop(request: AuthenticatedHttpRequest, pk: int) -> JsonResponse:
    """Stop a reply, whichever tab or web process started it; answer its state."""
    message = await in_thread(_owned_reply, request=True)(request.user, pk)
    state = await relay.reply_stop(message)
    return JsonResponse({"state": state})


@require_POST
async def conversation_send(request: AuthenticatedHttpRequest, pk: int | None = None) -> HttpResponseBase:
    return await _stream_reply(request, pk, "send")


@require_POST
async def conversation_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    return await _stream_reply(request, pk, "edit")


@require_POST
async def conversation_regenerate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    return await _stream_reply(request, pk, "regenerate")


@require_POST
async def conversation_continue(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    return await _stream_reply(request, pk, "continue")


@require_GET
def model_list(request: AuthenticatedHttpRequest) -> JsonResponse:
    credential = credential_for_user(user=request.user, credential_id=request.GET.get("credential") or None)
    if credential is None:
        return JsonResponse({"models": [settings.DEFAULT_MODEL], "error": _("Add an API key to list models.")})
    try:
        models = services.models_for(credential=credential)
    except (ProviderError, CredentialError) as exc:
        return JsonResponse(
            {"models": [settings.DEFAULT_MODEL], "error": _("Could not list models: %(error)s") % {"error": exc}}
        )
    return JsonResponse({"models": models, "error": ""})


def _update(
    request: AuthenticatedHttpRequest, pk: int, form_class: type[RenameForm | SystemPromptForm]
) -> HttpResponse:
    conversation = _get_conversation(request, pk)
    form = form_class(request.POST, instance=conversation)
    if form.is_valid():
        form.save()
        messages.success(request, _("Conversation updated."))
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect("chat:conversation-detail", pk=conversation.pk)


@require_POST
def conversation_rename(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _update(request, pk, RenameForm)


@require_POST
def conversation_system_prompt(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _update(request, pk, SystemPromptForm)


@require_POST
def message_select(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Show another version of a message (the "‹ 2 / 3 ›" buttons)."""
    conversation = _get_conversation(request, pk)
    message_id = _message_id(request)
    message = conversation.messages.filter(pk=message_id).first() if message_id else None
    if message is None:
        raise Http404("No such message.")
    message.select()
    return redirect(f"{conversation_url(conversation)}#message-{message.pk}")


def conversation_url(conversation: Conversation) -> str:
    return reverse("chat:conversation-detail", args=[conversation.pk])


@require_GET
def conversation_export(request: AuthenticatedHttpRequest, pk: int, fmt: str) -> HttpResponse:
    """Download the conversation: Markdown (the thread in view) or JSON (every version)."""
    conversation = _get_conversation(request, pk)
    filename = f"conversation-{conversation.pk}.{fmt}"
    response: HttpResponse
    if fmt == "json":
        response = JsonResponse(export.as_json(conversation), json_dumps_params={"ensure_ascii": False, "indent": 2})
    else:
        response = HttpResponse(export.as_markdown(conversation), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
def conversation_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(request, pk)
    conversation.delete()
    messages.success(request, _("Deleted “%(title)s”.") % {"title": conversation})
    return redirect("chat:index")
