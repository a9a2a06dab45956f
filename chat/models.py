from __future__ import annotations

import unicodedata
from datetime import date, datetime

from django.conf import settings
from django.db import models
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.models import ApiKey, Credential
from tokens.provider.errors import KIND_LABELS


class ConversationQuerySet(models.QuerySet):
    def matching(self, query: str) -> ConversationQuerySet:
        """Conversations whose title or any message contains the words of query."""
        qs = self
        for word in query.split()[:8]:
            qs = qs.filter(Q(title__icontains=word) | Q(messages__content__icontains=word))
        return qs.distinct()


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    credential = models.ForeignKey(
        Credential, on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations"
    )
    model = models.CharField(max_length=100, blank=True)
    system_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title or str(_("New chat"))

    def title_from(self, text: str, width: int = 60) -> str:
        """The message's words, cut at `width` columns; Chinese, Japanese and Korean characters take two."""
        words = " ".join(text.split())
        used = 0
        for index, char in enumerate(words):
            used += 2 if unicodedata.east_asian_width(char) in "WF" else 1
            if used > width:
                return words[:index] + "…"
        return words


class Role(models.TextChoices):
    USER = "user", _("User")
    ASSISTANT = "assistant", _("Assistant")


class State(models.TextChoices):
    STREAMING = "streaming", _("Streaming")
    COMPLETE = "complete", _("Complete")
    STOPPED = "stopped", _("Stopped")
    INCOMPLETE = "incomplete", _("Incomplete")
    ERROR = "error", _("Error")


class MessageQuerySet(models.QuerySet):
    def abandoned(self, before: datetime) -> MessageQuerySet:
        return self.filter(state=State.STREAMING, created_at__lt=before)

    def thread(self) -> list[Message]:
        """The versions in view, root to leaf: from each message, the most recently selected child.

        Messages form a tree (``parent``); siblings are versions of one turn (an edit or a
        regenerate adds one). Each message on the path gets ``versions`` (its siblings, oldest
        first) so a page can show "2 / 3".
        """
        children: dict[int | None, list[Message]] = {}
        for message in self.order_by("created_at", "id"):
            children.setdefault(message.parent_id, []).append(message)
        path: list[Message] = []
        siblings = children.get(None, [])
        while siblings:
            chosen = max(siblings, key=lambda m: (m.selected_at, m.id))
            chosen.versions = siblings
            path.append(chosen)
            siblings = children.get(chosen.id, [])
        return path


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.COMPLETE)
    error = models.CharField(max_length=300, blank=True, help_text=_("What went wrong, in words for the user."))
    model = models.CharField(max_length=100, blank=True)
    trimmed_turns = models.PositiveIntegerField(
        default=0, help_text=_("Earlier messages left out to fit the model's context window.")
    )
    reasoning = models.TextField(blank=True, help_text="The model's thinking text, when the provider streams it.")
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        help_text="The turn this one answers or follows; siblings are versions (edits, regenerations).",
    )
    selected_at = models.DateTimeField(
        default=timezone.now, help_text="When this version was last chosen; the newest is shown."
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"

    def save(self, *args, **kwargs) -> None:
        # A new message without a parent follows the thread in view, so code that only appends
        # (a send, a reply) needs no knowledge of versions; a new first-turn version says so.
        if self._state.adding and self.parent_id is None and not getattr(self, "is_root", False):
            thread = Message.objects.filter(conversation_id=self.conversation_id).thread()
            self.parent = thread[-1] if thread else None
        super().save(*args, **kwargs)

    @property
    def version(self) -> int:
        """1-based position among its versions (after ``thread()``), e.g. 2 in "2 / 3"."""
        return [m.pk for m in getattr(self, "versions", [self])].index(self.pk) + 1

    @property
    def previous_version(self) -> Message | None:
        return self.versions[self.version - 2] if self.version > 1 else None

    @property
    def next_version(self) -> Message | None:
        versions = getattr(self, "versions", [self])
        return versions[self.version] if self.version < len(versions) else None

    def select(self) -> None:
        """Show this version: it and its newest descendants become the conversation's thread."""
        self.selected_at = timezone.now()
        self.save(update_fields=["selected_at"])


class UsageQuerySet(models.QuerySet):
    def totals(self) -> dict:
        return self.aggregate(
            requests=Count("id"),
            errors=Count("id", filter=~Q(error_type="")),
            prompt_tokens=Sum("prompt_tokens", default=0),
            completion_tokens=Sum("completion_tokens", default=0),
            total_tokens=Sum("total_tokens", default=0),
            cost_usd=Sum("cost_usd"),
            avg_latency_ms=Avg("latency_ms"),
        )

    def daily_totals(self) -> models.QuerySet:
        return (
            self.annotate(day=TruncDate("created_at"))
            .values("day")
            .annotate(
                requests=Count("id"),
                errors=Count("id", filter=~Q(error_type="")),
                total_tokens=Sum("total_tokens", default=0),
            )
            .order_by("day")
        )

    def in_range(self, since: date | None, until: date | None) -> UsageQuerySet:
        qs = self
        if since:
            qs = qs.filter(created_at__date__gte=since)
        if until:
            qs = qs.filter(created_at__date__lte=until)
        return qs

    def older_than(self, moment: datetime) -> UsageQuerySet:
        return self.filter(created_at__lt=moment)


class UsageRecord(models.Model):
    """One model call. Holds counts and timings, never message text or a secret."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    credential_id = models.UUIDField(null=True, blank=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.SET_NULL, null=True, blank=True)
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage_records",
        help_text="The personal API key of an API call; empty for the web chat.",
    )
    model = models.CharField(max_length=100)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("Upstream HTTP status."))
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text=_("From the price list; empty if unknown.")
    )
    is_estimated = models.BooleanField(default=False, help_text=_("Counted locally: upstream sent no usage."))
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=100, blank=True, help_text=_("Upstream x-request-id."))
    response_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    error_type = models.CharField(max_length=40, blank=True)
    outcome = models.CharField(max_length=12, choices=State.choices, default=State.COMPLETE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = UsageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["model", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model} call {self.pk}"

    @property
    def is_error(self) -> bool:
        return bool(self.error_type)

    @property
    def error_label(self) -> str:
        """The error kind in words for staff (tokens.provider.errors.KIND_LABELS); unknown kinds as stored."""
        return str(KIND_LABELS.get(self.error_type, self.error_type))
