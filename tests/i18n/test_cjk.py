"""Chinese text in conversations: search finds it, titles keep whole characters."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def chats(alice):
    weather = Conversation.objects.create(user=alice, title="出行计划")
    Message.objects.create(conversation=weather, role="user", content="明天上海的天气怎么样？要不要带伞")
    code = Conversation.objects.create(user=alice, title="代码审查：排序函数")
    Message.objects.create(conversation=code, role="user", content="帮我看看这个快速排序")
    return weather, code


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("上海", {"出行计划"}),  # inside a message, no spaces around it
        ("带伞", {"出行计划"}),
        ("排序", {"代码审查：排序函数"}),  # title and message
        ("代码 快速", {"代码审查：排序函数"}),  # every word must match
        ("北京", set()),
    ],
)
def test_search_matches_chinese_text_without_word_breaks(alice_client, chats, query, titles):
    page = alice_client.get("/chat/", {"q": query}).content.decode()
    shown = {title for title in ("出行计划", "代码审查：排序函数") if f">{title}</a>" in page}
    assert shown == titles


def test_a_title_is_cut_by_width_so_chinese_titles_are_as_long_as_english_ones():
    chinese = "请帮我把下面这段会议纪要整理成三条要点，并且每条不超过二十个字，语气正式一些"
    title = Conversation().title_from(chinese)
    assert title == chinese[:30] + "…"  # 30 wide characters fill the 60 columns
    english = "Summarise these meeting notes as three short points in a formal tone please"
    assert Conversation().title_from(english) == english[:60] + "…"
    assert Conversation().title_from("短标题 short") == "短标题 short"
