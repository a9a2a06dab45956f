"""Hostile values in every stored text field a person or a provider can set, for the XSS suites.

`fill_every_text_field` walks every model of our apps (not a hand-written list), so a text field added tomorrow is
filled and rendered too; a model with such fields but no row fails `rows_missing` until the World makes one.
"""

from __future__ import annotations

import datetime

from django.apps import apps
from django.db import models
from django.utils import timezone

from chat.models import Message, PriceOverride, UsageRecord
from chat.usage import rollup_add
from tokens.lifecycle import event_record
from tokens.models import EventKind

APPS = ("accounts", "tokens", "chat")
# Not settable by anyone as text: hashes, lookup prefixes, leases, and the zone name (validated against tzdata).
NOT_TEXT = {"password", "secret_hash", "prefix", "reply_lease", "timezone"}

# Each template names the field's number; every one holds markup that is live unless escaped.
PAYLOADS = [
    "<script>__xss({n})</script>",
    '"><img src=x onerror=__xss({n})>',
    "'><svg onload=__xss({n})>",
    "</textarea></title></script><script>__xss({n})</script>",
    '<a href="javascript:__xss({n})">x</a>',
    '=HYPERLINK("https://evil.example/{n}")<b>',
    "<iframe srcdoc='<script>parent.__xss({n})</script>'>",
    "{{{{7*7}}}}<style>@import'//evil.example/{n}'</style>",
]
SHORT = "<i>{n}'\""  # for fields too short to hold a whole payload (hints, versions, finish reasons)


def text_fields(model: type[models.Model]) -> list[models.Field]:
    return [
        field
        for field in model._meta.concrete_fields
        if isinstance(field, models.CharField | models.TextField)
        and not field.choices
        and field.name not in NOT_TEXT
        and type(field).__name__ != "SealedField"
    ]


def our_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if m._meta.app_label in APPS and text_fields(m)]


def rows_add(world) -> None:
    """The rows the World lacks that hold provider- or staff-typed text: usage, roll-ups, prices, events."""
    Message.objects.create(conversation=world.conversation, role="assistant", content="Half", state="error")
    for source in ("web", "api"):
        record = UsageRecord.objects.create(
            user=world.alice,
            conversation=world.conversation,
            credential_id=world.credential.pk,
            model="gpt-4o-mini",
            source=source,
            prompt_tokens=3,
            completion_tokens=5,
            total_tokens=8,
            status_code=200,
        )
        rollup_add(record)  # a row in every roll-up table
    PriceOverride.objects.create(model="gpt-4o-mini", effective_from=timezone.now() - datetime.timedelta(days=1))
    event_record(world.credential, EventKind.CHECKED, actor="alice", detail="ok")


def rows_missing() -> list[str]:
    return [m.__name__ for m in our_models() if not m._default_manager.exists()]


def fill_every_text_field() -> dict[str, str]:
    """Set every free-text field of every row to a hostile value; return value -> "Model.field" for messages."""
    values: dict[str, str] = {}
    number = 0
    for model in our_models():
        fields = text_fields(model)
        for row in model._default_manager.all():
            for field in fields:
                number += 1
                value = PAYLOADS[number % len(PAYLOADS)].format(n=number)
                if field.max_length and len(value) > field.max_length:
                    value = SHORT.format(n=number)
                setattr(row, field.attname, value)
                values[value] = f"{model.__name__}.{field.name}"
            model._default_manager.filter(pk=row.pk).update(**{f.attname: getattr(row, f.attname) for f in fields})
    return values
