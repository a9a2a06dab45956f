"""A conversation as a file people can keep: Markdown for reading, JSON with every version for programs."""

from __future__ import annotations

from django.utils.translation import gettext as _

from chat.models import Conversation, Role


def as_markdown(conversation: Conversation) -> str:
    """The thread in view, one section per turn; reply text is kept verbatim (it is Markdown already)."""
    lines = [f"# {conversation}", ""]
    if conversation.system_prompt:
        lines += [f"> **{_('System prompt')}:** " + conversation.system_prompt.replace("\n", "\n> "), ""]
    for message in conversation.messages.thread():
        if message.role == Role.USER:
            lines += [f"## {_('You')}", "", message.content, ""]
        else:
            heading = _("Assistant") + (f" ({message.model})" if message.model else "")
            lines += [f"## {heading}", "", message.content, ""]
            if message.state != "complete":
                lines += [f"*{message.get_state_display()}*", ""]
    return "\n".join(lines)


def as_json(conversation: Conversation) -> dict:
    """Every message of the conversation, all versions, with ``parent`` links and the thread in view."""
    thread = {m.pk for m in conversation.messages.thread()}
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": [
            {
                "id": m.pk,
                "parent": m.parent_id,
                "role": m.role,
                "content": m.content,
                "reasoning": m.reasoning,
                "state": m.state,
                "error": m.error,
                "model": m.model,
                "in_view": m.pk in thread,
                "created_at": m.created_at.isoformat(),
            }
            for m in conversation.messages.order_by("created_at", "id")
        ],
    }
