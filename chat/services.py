"""Conversations and replies: what a chat request saves, sends upstream and records."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache as cache_in_process
from typing import Any

from django.conf import settings
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import InterfaceError, OperationalError, connection, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts import ratelimit
from accounts.models import User
from chat import budgets
from chat.catalog import context_window
from chat.models import (
    THREAD_ORDER,
    Conversation,
    Message,
    MessageQuerySet,
    Role,
    Source,
    State,
    UsageRecord,
    thread_of,
)
from chat.tokencount import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, count_message_tokens, count_text_tokens
from chat.usage import usage_write
from project.prepared import PreparedQuery
from project.sql import row_insert, row_update
from tokens import provider
from tokens.models import BEARER_FIELDS, Credential
from tokens.provider import Bearer, Completion, ProviderError
from tokens.services import CredentialError, credential_bearer, credential_for_user, release_db_connection

logger = logging.getLogger(__name__)

MODEL_MAX_CHARS = 100  # Conversation.model, Message.model and UsageRecord.model are varchar(100)


class ChatRefusal(Exception):
    """The request was refused before anything was saved; the user's text stays in their box."""

    def __init__(self, message: str, *, status: int = 400, redirect: str = "", retry_after: int | None = None):
        super().__init__(message)
        self.message, self.status, self.redirect, self.retry_after = message, status, redirect, retry_after


@dataclass
class ReplyPlan:
    """Everything a reply needs, read and checked but not yet written."""

    user: User
    conversation: Conversation | None
    credential: Credential
    bearer: Bearer
    model: str
    mode: str
    text: str
    system_prompt: str
    history: list[dict]
    trimmed: int
    lease: str = ""
    anchor: Message | None = None  # see thread_fork
    has_budget: bool = True  # the person's limits include a budget (read when planning)


@dataclass
class PreparedReply:
    """What a reply streams into. `prefix` is the (kind, text) an answer being continued already holds."""

    conversation: Conversation
    user_message: Message
    assistant_message: Message
    bearer: Bearer
    model: str
    history: list[dict]
    lease: str
    has_budget: bool = True
    trimmed: int = 0
    prefix: tuple[tuple[str, str], ...] = ()


def _check_rate(user: User, limits: budgets.Limits) -> None:
    limit = limits.chat_rate_limit
    verdict = ratelimit.hit(f"chat:{user.pk}", limit=limit, window=60)
    if not verdict.allowed:
        raise ChatRefusal(
            ngettext(
                "You have sent %(limit)d message this minute. Try again in %(seconds)d s.",
                "You have sent %(limit)d messages this minute. Try again in %(seconds)d s.",
                limit,
            )
            % {"limit": limit, "seconds": verdict.retry_after},
            status=429,
            retry_after=verdict.retry_after,
        )


def _check_budget(user: User, limits: budgets.Limits) -> None:
    try:
        budgets.budget_check(user=user, limits=limits)
    except budgets.BudgetExceeded as exc:
        raise ChatRefusal(exc.message, status=402) from exc


def lease_acquire(conversation: Conversation, *, model: str, credential: Credential) -> str | None:
    """Claim the conversation for one reply with a conditional UPDATE; None if a live lease holds it.

    The same UPDATE makes the reply's model and credential the conversation's and moves it to the top of the list
    (updated_at), on the row and on `conversation`: one statement less for reply_record, which then writes only
    messages. The lease lapses CHAT_LEASE_SECONDS after its last renewal, so a process that dies frees the
    conversation and `replies_reap` marks its reply incomplete (the claim pattern of tokens.lifecycle's refresh).
    """
    lease, now = uuid.uuid4().hex, timezone.now()
    until = now + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    # The queryset's update() compiled this statement on every send; the same SQL, built once per process.
    with connection.cursor() as cursor:
        # Values prepared as the ORM would: SQLite takes neither a UUID nor an aware datetime as they are.
        ops, pk = connection.ops, Credential._meta.pk
        credential_id = credential and pk.get_db_prep_value(credential.pk, connection)
        until_value, now_value = ops.adapt_datetimefield_value(until), ops.adapt_datetimefield_value(now)
        params: list[Any] = [lease, until_value, model, credential_id, now_value, conversation.pk, now_value]
        cursor.execute(_lease_claim_sql(), params)
        if not cursor.rowcount:
            return None
    conversation.model, conversation.credential, conversation.updated_at = model, credential, now
    return lease


@cache_in_process
def _lease_claim_sql() -> str:
    """lease_acquire's UPDATE; parameters: lease, lease until, model, credential id, updated at, id, now."""
    meta, qn = Conversation._meta, connection.ops.quote_name
    column = {field.name: field.column for field in meta.concrete_fields}
    names = ("reply_lease", "reply_lease_until", "model", "credential", "updated_at")
    assignments = ", ".join(f"{qn(column[name])} = %s" for name in names)
    until = qn(column["reply_lease_until"])
    # Names come from the model, values are parameters.
    return (
        f"UPDATE {qn(meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {qn(meta.pk.column)} = %s AND ({until} IS NULL OR {until} < %s)"
    )


def _lease_release_statement(conversation_id: int, lease: str) -> tuple[str, list]:
    """lease_release as (SQL, parameters), for a write that goes with others (usage_write's `along`)."""
    qn, table = connection.ops.quote_name, Conversation._meta.db_table
    # Names come from the model, values are parameters.
    sql = f"UPDATE {qn(table)} SET reply_lease = '', reply_lease_until = NULL WHERE id = %s AND reply_lease = %s"  # noqa: S608
    return sql, [conversation_id, lease]


def lease_release(conversation_id: int | None, lease: str) -> None:
    if conversation_id is not None:
        Conversation.objects.filter(pk=conversation_id, reply_lease=lease).update(
            reply_lease="", reply_lease_until=None
        )


def leases_renew(leases: dict[int, str], checkpoints: dict[int, tuple[str, str]]) -> None:
    """Renew leases (conversation id -> lease) in one UPDATE and save each reply's text so far.

    `checkpoints` maps message id -> (content, reasoning); only replies still streaming are written.
    """
    until = timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    # Messages before conversations, as reply_record and reply_finish lock them: the other order deadlocked with
    # replies finishing meanwhile (PostgreSQL "deadlock detected" in the bench kit at 100 streams).
    with transaction.atomic():
        streaming = Message.objects.filter(pk__in=checkpoints, state=State.STREAMING).only("pk").order_by("pk")
        messages = [Message(pk=m.pk, content=checkpoints[m.pk][0], reasoning=checkpoints[m.pk][1]) for m in streaming]
        Message.objects.bulk_update(messages, ["content", "reasoning"])
        Conversation.objects.filter(pk__in=leases, reply_lease__in=leases.values()).update(reply_lease_until=until)


def replies_reap(*, conversation_id: int | None = None) -> int:
    """Mark replies whose process is gone (lapsed lease) incomplete, keeping the text saved so far."""
    abandoned = Message.objects.abandoned(timezone.now())
    if conversation_id is not None:
        abandoned = abandoned.filter(conversation_id=conversation_id)
    if settings.REDIS_URL:
        _checkpoints_from_feed(abandoned)
    closed = 0
    for language in dict(settings.LANGUAGES):  # the note is stored in its reader's language
        readers = [language, ""] if language == settings.LANGUAGE_CODE else [language]
        with translation.override(language):
            closed += abandoned.filter(conversation__user__language__in=readers).update(
                state=State.INCOMPLETE, error=_("The server restarted while this reply was being written.")
            )
    return closed


def _checkpoints_from_feed(abandoned: MessageQuerySet) -> None:
    """Take the text of dead replies from their Redis copy when it is ahead of the last database checkpoint."""
    from chat import feed  # feed builds on this module

    for message in abandoned.only("pk", "content", "reasoning"):
        try:
            content, reasoning = feed.saved_text(message.pk)
        except Exception:
            logger.warning("could not read reply %s from Redis", message.pk, exc_info=True)
            continue
        if len(content) + len(reasoning) > len(message.content) + len(message.reasoning):
            Message.objects.filter(pk=message.pk, state=State.STREAMING).update(content=content, reasoning=reasoning)


def reply_reap_if_abandoned(message_id: int) -> Message:
    """The message, re-read, after reaping it if its process is gone."""
    message = Message.objects.select_related("conversation").get(pk=message_id)
    if message.state == State.STREAMING and replies_reap(conversation_id=message.conversation_id):
        message.refresh_from_db()
    return message


def _pick_credential(user: User, credential_id: str | None, conversation: Conversation | None = None) -> Credential:
    """The credential asked for (id), else the conversation's own, else the person's default; refuse if none works."""
    known = conversation.credential if conversation is not None else None  # read with the conversation
    credential: Credential | None
    if known is not None and known.user_id == user.pk and str(credential_id or known.pk) == str(known.pk):
        credential = known
    else:
        own = conversation.credential_id if conversation is not None else None
        credential = credential_for_user(user=user, credential_id=credential_id or own)
    if credential is None:
        raise ChatRefusal(
            _("Add an API key before you chat: replies are paid for with your own key."),
            status=409,
            redirect=reverse("tokens:credential-list") + "?next=chat",
        )
    if not credential.is_usable:
        raise ChatRefusal(
            _("Your credential “%(name)s” is %(status)s. Fix or replace it on the keys page.")
            % {"name": credential.name, "status": credential.get_status_display().lower()},
            status=409,
            redirect=reverse("tokens:credential-list") + "?next=chat",
        )
    return credential


def _as_turns(thread: list[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in thread if m.content and m.state != State.STREAMING]


# conversation_id too: the related manager reads it to attach the conversation to each message.
THREAD_FIELDS = ("id", "conversation_id", "parent_id", "selected_at", "role", "content", "state")


# Only what the history and the fork read: a long thread's reasoning and error text stay in the database. Compiled
# once (project.prepared).
_THREAD_MESSAGES = PreparedQuery(
    lambda conversation_id: (
        Message.objects.only(*THREAD_FIELDS).filter(conversation_id=conversation_id).order_by(*THREAD_ORDER)
    ),
    -7301,
)


def thread_fork(conversation: Conversation | None, mode: str, message_id: int | None) -> tuple[Message | None, list]:
    """Where a new turn goes in the conversation's tree, and the thread it follows.

    Returns (anchor, earlier): for "send" the anchor is the last message in view (the new
    message's parent); for "edit" it is the user message being replaced (the new text becomes
    its sibling, a new version); for "regenerate" it is the user message to answer again (an
    assistant message's id means its parent). ``earlier`` is the thread before the new turn.
    Nothing is deleted: earlier versions stay, each with its usage row. For "continue" the
    anchor is the answer to go on with (the last message in view); it is part of ``earlier``.
    """
    thread = []
    if conversation is not None:
        messages = _THREAD_MESSAGES.all(conversation.pk)
        for message in messages:
            message.conversation = conversation  # as conversation.messages would have set it
        thread = thread_of(messages)
    if mode == "send":
        return (thread[-1] if thread else None), thread
    if mode == "continue":
        last = thread[-1] if thread else None
        if last is None or last.pk != message_id or last.role != Role.ASSISTANT or not last.content:
            raise ChatRefusal(_("Only the last answer can be continued."), status=409)
        return last, thread
    users = [i for i, m in enumerate(thread) if m.role == Role.USER]
    if message_id is None:
        at = users[-1] if users else None
    else:
        at = next((i for i, m in enumerate(thread) if m.pk == message_id), None)
        if at is not None and mode == "regenerate" and thread[at].role == Role.ASSISTANT:
            at -= 1
        if at is not None and (at < 0 or thread[at].role != Role.USER):
            at = None
    if at is None:
        raise ChatRefusal(_("There is no message to answer again yet."), status=409)
    return thread[at], thread[:at] if mode == "edit" else thread[: at + 1]


def _turns_for(conversation: Conversation | None, mode: str, message_id: int | None, prompt: str, text: str):
    """The history as it will be once this request's turn is recorded, and the fork's anchor."""
    anchor, earlier = thread_fork(conversation, mode, message_id)
    prompt = conversation.system_prompt if conversation else prompt
    turns = ([{"role": "system", "content": prompt}] if prompt else []) + _as_turns(earlier)
    if mode not in ("regenerate", "continue"):
        turns.append({"role": Role.USER, "content": text})
    return turns, anchor


def _input_budget(window: int | None) -> int | None:
    """Tokens the history may take in a window, leaving room for the reply; None when the window is unknown."""
    return None if window is None else window - min(4096, window // 4)


def _surely_fits(messages: list[dict], budget: int) -> bool:
    """True when even one token per UTF-8 byte fits `budget` (a BPE token is at least one byte): no need to count."""
    return TOKENS_PER_REPLY + sum(len(m["content"].encode()) + TOKENS_PER_MESSAGE for m in messages) <= budget


def trim_history(messages: list[dict], window: int | None) -> tuple[list[dict], int]:
    """Drop the oldest turns until the history fits the model's window; keep the system prompt and last turn.

    With an unknown window nothing is dropped here: the provider says if it is too long and
    tokens.provider.stream_chat trims and retries once (trim_on_overflow).
    """
    budget = _input_budget(window)
    if budget is None or _surely_fits(messages, budget):
        return messages, 0
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    sizes = [count_message_tokens([turn]) for turn in turns]
    total = count_message_tokens(system) + sum(sizes)
    dropped = 0
    while total > budget and dropped < len(turns) - 1:
        total -= sizes[dropped]
        dropped += 1
    return system + turns[dropped:], dropped


def _validate_text(text: str, model: str, window: int | None) -> str:
    text = text.strip()
    if not text:
        raise ChatRefusal(_("Type a message first."))
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatRefusal(
            _("That message is %(length)s characters; the limit is %(limit)s. Shorten it or split it up.")
            % {"length": intcomma(len(text)), "limit": intcomma(settings.CHAT_MAX_MESSAGE_CHARS)},
            status=413,
        )
    budget = _input_budget(window)
    # Counting is skipped when even one token per UTF-8 byte would fit.
    tokens = 0 if budget is None or len(text.encode()) <= budget else count_text_tokens(text)
    if budget is not None and tokens > budget:
        raise ChatRefusal(
            _("That message is about %(tokens)s tokens; %(model)s can take about %(budget)s. Shorten it.")
            % {"tokens": intcomma(tokens), "model": model, "budget": intcomma(budget)},
            status=413,
        )
    return text


def _refuse_null_characters(*values: str) -> None:
    """Refuse text holding NUL as Django's form fields do: PostgreSQL text cannot store it, so the turn could not
    be saved once the reply had started. Raises ChatRefusal (400) with Django's own, translated, message."""
    try:
        for value in values:
            ProhibitNullCharactersValidator()(value)
    except ValidationError as exc:
        raise ChatRefusal(exc.messages[0]) from exc


# What a reply reads of its conversation (created_at, updated_at and reply_lease are only written) and credential.
CONVERSATION_FIELDS = (
    "id",
    "user_id",
    "title",
    "credential",
    "model",
    "system_prompt",
    "reply_lease_until",
    *(f"credential__{name}" for name in BEARER_FIELDS),
)


def _owned_conversation(user: User, conversation_id: int | None) -> Conversation | None:
    if conversation_id is None:
        return None
    conversation = _OWNED_CONVERSATION.first(conversation_id, user.pk)
    if conversation is None:
        raise ChatRefusal(_("No such conversation."), status=404)
    return conversation


# By primary key, without ORDER BY; compiled once (project.prepared).
_OWNED_CONVERSATION = PreparedQuery(
    lambda pk, user_id: (
        Conversation.objects.select_related("credential")
        .only(*CONVERSATION_FIELDS)
        .filter(pk=pk, user_id=user_id)
        .order_by()
    ),
    -7301,
    -7302,
)


def reply_plan(
    *,
    user: User,
    conversation_id: int | None,
    text: str = "",
    model: str = "",
    credential_id: str | None = None,
    system_prompt: str = "",
    mode: str = "send",
    message_id: int | None = None,
) -> ReplyPlan:
    """Check a chat request and gather what the upstream call needs, writing nothing yet.

    mode "send" adds a message, "edit" adds a new version of a user message (message_id,
    default the last) and answers it, "regenerate" answers a user message again (message_id
    of it or of its reply, default the last), keeping earlier versions. "continue" goes on with
    the last answer (message_id), cut by the output limit, appending to it as ChatGPT's "Continue
    generating" and LibreChat's Continue do: the model gets the cut answer as the last assistant turn.
    A refusal here leaves the user's text in their box and the conversation as it was; once this returns (having
    taken the lease, which also records the model and credential), the upstream call starts while `reply_record`
    saves the user's turn.
    """
    _refuse_null_characters(text, model, system_prompt)
    conversation = _owned_conversation(user, conversation_id)
    credential = _pick_credential(user, credential_id, conversation)
    model = model or (conversation.model if conversation else "") or credential.default_model or settings.DEFAULT_MODEL
    # A continued answer goes on with the model that wrote it.
    if mode == "continue" and conversation is not None and message_id is not None:
        model = conversation.messages.filter(pk=message_id).values_list("model", flat=True).first() or model
    model = model.strip()
    if len(model) > MODEL_MAX_CHARS:  # the reply could not be saved: every model column holds 100
        raise ChatRefusal(
            _("That model id is %(length)s characters; the limit is %(limit)s.")
            % {"length": intcomma(len(model)), "limit": MODEL_MAX_CHARS}
        )
    window = credential.context_window or context_window(model)
    if mode not in ("regenerate", "continue"):
        text = _validate_text(text, model, window)
    system_prompt = system_prompt.strip()
    turns, anchor = _turns_for(conversation, mode, message_id, system_prompt, text)
    history, trimmed = trim_history(turns, window)
    limits = budgets.limits_for(user)
    _check_rate(user, limits)
    _check_budget(user, limits)
    try:
        bearer = credential_bearer(credential=credential)
    except CredentialError as exc:
        raise ChatRefusal(str(exc), status=409, redirect=reverse("tokens:credential-list")) from exc
    # Leased last, so no refusal above has a lease to give back.
    lease = ""
    if conversation is not None:
        acquired = lease_acquire(conversation, model=model, credential=credential)
        if acquired is None:
            raise ChatRefusal(
                _("A reply is still being written in this conversation. Stop it or wait for it."), status=409
            )
        lease = acquired
    return ReplyPlan(
        user,
        conversation,
        credential,
        bearer,
        model,
        mode,
        text,
        system_prompt,
        history,
        trimmed,
        lease,
        anchor,
        has_budget=limits.has_budget,
    )


def reply_record(plan: ReplyPlan) -> PreparedReply:
    """Save the user's turn and an empty assistant message to stream into."""
    conversation = plan.conversation
    if (
        connection.vendor == "postgresql"
        and conversation is not None
        and conversation.reply_lease_until is None
        and plan.mode in ("send", "edit")
        and not connection.in_atomic_block
    ):
        return _turn_record(plan, conversation)
    with transaction.atomic():
        if conversation is None:
            plan.lease = uuid.uuid4().hex  # nobody else can know this conversation yet
            conversation = Conversation.objects.create(
                user=plan.user,
                title=Conversation().title_from(plan.text),
                system_prompt=plan.system_prompt,
                model=plan.model,
                credential=plan.credential,
                reply_lease=plan.lease,
                reply_lease_until=timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS),
            )
        elif conversation.reply_lease_until is not None:
            # The lease, as the checks read it, had lapsed without being released: its process died, and a reply
            # may be left streaming. A released lease (every reply that ended) spares this UPDATE.
            conversation.messages.filter(state=State.STREAMING).update(
                state=State.INCOMPLETE, error=_("The server restarted while this reply was being written.")
            )
        # An existing conversation's model, credential and updated_at were written with its lease (lease_acquire).
        if plan.mode == "continue":
            return _continued_record(plan, conversation)
        user_message = _record_user_turn(conversation, plan.text, plan.mode, plan.anchor)
        assistant = _assistant_message(plan, conversation, user_message)
        assistant.save()
    return _prepared(plan, conversation, user_message, assistant)


def _assistant_message(plan: ReplyPlan, conversation: Conversation, user_message: Message) -> Message:
    """The empty assistant message the reply streams into (not saved)."""
    return Message(
        conversation=conversation,
        role=Role.ASSISTANT,
        state=State.STREAMING,
        model=plan.model,
        trimmed_turns=plan.trimmed,
        parent=user_message,
    )


def _turn_record(plan: ReplyPlan, conversation: Conversation) -> PreparedReply:
    """reply_record's usual case on PostgreSQL, a new message in a conversation whose last reply ended: the user's
    message (in a data-modifying WITH, which PostgreSQL runs exactly once) and the assistant's under it in one INSERT
    statement, atomic on its own, so one round trip instead of BEGIN, two INSERTs and COMMIT."""
    user_message = Message(conversation=conversation, role=Role.USER, content=plan.text)
    _place_user_turn(user_message, plan.mode, plan.anchor)
    assistant = _assistant_message(plan, conversation, user_message)
    table, columns, user_values = row_insert(user_message)
    _table, _columns, assistant_values = row_insert(assistant)
    parent = columns.index(connection.ops.quote_name("parent_id"))
    placeholders = ["%s"] * len(columns)
    placeholders[parent] = "(SELECT id FROM turn)"
    del assistant_values[parent]
    listed = ", ".join(columns)
    # Names come from the model, values are parameters.
    sql = (
        f"WITH turn AS (INSERT INTO {table} ({listed}) VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id) "  # noqa: S608
        f"INSERT INTO {table} ({listed}) VALUES ({', '.join(placeholders)}) RETURNING id, parent_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*user_values, *assistant_values])
        assistant.pk, user_message.pk = cursor.fetchone()
    for message in (user_message, assistant):
        message._state.adding, message._state.db = False, connection.alias
    assistant.parent = user_message
    return _prepared(plan, conversation, user_message, assistant)


def _continued_record(plan: ReplyPlan, conversation: Conversation) -> PreparedReply:
    """Reopen the answer being continued: it streams again, its text so far is the new reply's prefix."""
    assert plan.anchor is not None  # thread_fork refuses a continue without an answer to go on with
    assistant = Message.objects.select_for_update(of=("self",)).select_related("parent").get(pk=plan.anchor.pk)
    assistant.conversation = conversation  # read again when the reply starts, on the event loop
    prefix = (("reasoning", assistant.reasoning), ("content", assistant.content))
    assistant.state, assistant.error, assistant.error_kind = State.STREAMING, "", ""
    assistant.save(update_fields=["state", "error", "error_kind"])
    user_message = assistant.parent or assistant
    return _prepared(plan, conversation, user_message, assistant, prefix=tuple((k, t) for k, t in prefix if t))


def _prepared(
    plan: ReplyPlan,
    conversation: Conversation,
    user_message: Message,
    assistant: Message,
    prefix: tuple[tuple[str, str], ...] = (),
) -> PreparedReply:
    return PreparedReply(
        conversation,
        user_message,
        assistant,
        plan.bearer,
        plan.model,
        plan.history,
        plan.lease,
        plan.has_budget,
        plan.trimmed,
        prefix=prefix,
    )


def _record_user_turn(conversation: Conversation, text: str, mode: str, anchor: Message | None) -> Message:
    """Add the user's message under the anchor (a new version of it for "edit"); regenerate reuses it."""
    if mode == "regenerate":
        assert anchor is not None  # thread_fork refuses a regenerate with no message to answer
        return anchor
    message = Message(conversation=conversation, role=Role.USER, content=text)
    _place_user_turn(message, mode, anchor)
    message.save()
    return message


def _place_user_turn(message: Message, mode: str, anchor: Message | None) -> None:
    if mode == "edit" and anchor is not None:
        message.parent_id = anchor.parent_id  # the id is enough: anchor.parent would read the row again
    else:
        message.parent = anchor
    message.is_root = message.parent_id is None  # an edit of the first message is a new first version


def models_for(*, credential: Credential) -> list[str]:
    """Model ids this credential can use, from GET /models, cached per credential for ten minutes."""
    key = f"chat:models:{credential.pk}"
    try:
        models = cache.get(key)
    except Exception:
        models = None
    if models is None:
        bearer = credential_bearer(credential=credential)
        release_db_connection()
        models = provider.list_models(bearer)
        try:
            cache.set(key, models, timeout=600)
        except Exception:
            logger.warning("model list not cached", exc_info=True)
    return models


def reply_finish(
    prepared: PreparedReply,
    *,
    content: str,
    reasoning: str,
    state: str,
    completion: Completion,
    error: ProviderError | None,
) -> dict | None:
    """Save the assistant message and its usage row, once per reply, whatever happened; return `usage_summary`.

    Raises OperationalError or InterfaceError when the database gives no connection (chat.relay retries).
    """
    try:
        record = _reply_save(
            prepared, content=content, reasoning=reasoning, state=state, completion=completion, error=error
        )
        return usage_summary(
            {field: getattr(record, field) for field in ("prompt_tokens", "completion_tokens", "total_tokens")}
            | {"cost_usd": record.cost_usd, "estimated": int(record.is_estimated)}
        )
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        # The browser already has the text; losing the row must not break the stream.
        logger.exception("could not save reply %s", prepared.assistant_message.pk)
        lease_release(prepared.conversation.pk, prepared.lease)
        return None


def _reply_save(
    prepared: PreparedReply,
    *,
    content: str,
    reasoning: str,
    state: str,
    completion: Completion,
    error: ProviderError | None,
) -> UsageRecord:
    assistant = prepared.assistant_message
    assistant.content, assistant.reasoning, assistant.state = content, reasoning, state
    # A continuation that failed before any new text keeps the old ending (and so its Continue button).
    assistant.finish_reason = (completion.finish_reason or (assistant.finish_reason if prepared.prefix else ""))[:40]
    assistant.error, assistant.error_kind = (error.message[:300], error.kind[:40]) if error else ("", "")
    # Turns left out before sending, plus those the provider's context-length refusal made us drop.
    assistant.trimmed_turns = max(assistant.trimmed_turns, prepared.trimmed + completion.trimmed_turns)
    fields = ["content", "reasoning", "state", "finish_reason", "error", "error_kind", "trimmed_turns"]
    new_content = content[len(dict(prepared.prefix).get("content", "")) :]
    # The reply, its usage row and the lease's end appear together: one transaction, on PostgreSQL one round trip.
    along = [row_update(assistant, fields), _lease_release_statement(prepared.conversation.pk, prepared.lease)]
    return usage_record(prepared, completion=completion, state=state, content=new_content, error=error, along=along)


def done_payload(message: Message) -> dict:
    """The `done` event of a saved reply, as its running process sent it."""
    redirect = reverse("tokens:credential-list") if message.error_kind == "auth" else ""
    usage = UsageRecord.objects.per_message([message.pk]).get(message.pk)
    return {
        "state": message.state,
        "finish": message.finish_reason or None,
        "error": message.error,
        "trimmed": message.trimmed_turns,
        "redirect": redirect,
        "usage": usage_summary(usage) if usage else None,
    }


def usage_summary(usage: dict) -> dict:
    """A reply's tokens and cost for the page (a row of UsageQuerySet.per_message): counts, cost as a string."""
    cost = usage["cost_usd"]
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "cost_usd": None if cost is None else f"{cost.normalize():f}",
        "estimated": bool(usage["estimated"]),
    }


def usage_record(
    prepared: PreparedReply,
    *,
    completion: Completion,
    state: str,
    content: str,
    error: ProviderError | None,
    along: Sequence[tuple[str, Sequence]] = (),
) -> UsageRecord:
    """The web chat's one usage row for this reply, written with `along` (see chat.usage.usage_write)."""
    billed = not (error and error.kind != "cut" and not content)  # nothing was generated or billed

    def estimate() -> tuple[int, int]:
        return count_message_tokens(prepared.history, prepared.model), count_text_tokens(content, prepared.model)

    now = time.perf_counter()
    return usage_write(
        user_id=prepared.conversation.user_id,
        model=prepared.model,
        source=Source.WEB,
        usage=completion.usage if billed else None,
        estimate=estimate if billed else None,
        credential_id=prepared.bearer.credential_id,
        conversation_id=prepared.conversation.pk,
        message_id=prepared.assistant_message.pk,
        status_code=completion.status_code or (error.status if error else None),
        request_id=completion.request_id,
        response_id=completion.response_id,
        latency_ms=int((now - completion.started) * 1000),
        first_token_ms=int((completion.first_token_at - completion.started) * 1000)
        if completion.first_token_at
        else None,
        error_type=error.kind if error else "",
        outcome=state,
        has_budget=prepared.has_budget,
        along=along,
    )
