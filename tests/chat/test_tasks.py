from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from chat.models import Conversation, Message, UsageRecord
from chat.tasks import close_abandoned_replies, prune_usage

pytestmark = pytest.mark.django_db


def test_it_closes_replies_whose_lease_lapsed_and_leaves_live_ones(alice, settings):
    settings.CHAT_LEASE_SECONDS = 30
    now = timezone.now()
    dead = Conversation.objects.create(user=alice, reply_lease="a" * 32, reply_lease_until=now + timedelta(seconds=5))
    live = Conversation.objects.create(user=alice, reply_lease="b" * 32, reply_lease_until=now + timedelta(seconds=60))
    old = Message.objects.create(conversation=dead, role="assistant", state="streaming", content="Half")
    fresh = Message.objects.create(conversation=live, role="assistant", state="streaming")
    assert close_abandoned_replies() == 0  # both leases still run
    with time_machine.travel(now + timedelta(seconds=30)):
        assert close_abandoned_replies() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.state, old.content) == ("incomplete", "Half") and "restarted" in old.error
    assert fresh.state == "streaming"


def test_it_prunes_usage_past_retention(alice, settings):
    settings.USAGE_RETENTION_DAYS = 30
    with time_machine.travel(timezone.now() - timedelta(days=31)):
        UsageRecord.objects.create(user=alice, model="gpt-4o-mini")
    kept = UsageRecord.objects.create(user=alice, model="gpt-4o-mini")
    assert prune_usage() == 1
    assert list(UsageRecord.objects.all()) == [kept]
    settings.USAGE_RETENTION_DAYS = 0
    assert prune_usage() == 0
