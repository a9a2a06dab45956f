"""CI keeps the Chinese interface complete: every string in the code has a zh-Hans translation that is not
fuzzy, and no template shows English outside {% translate %}/{% blocktranslate %}.

The first test extracts the strings afresh (Django's makemessages, in a copy of the source), so a string added
without `make messages` fails here too. It needs GNU gettext's xgettext (Debian package gettext; .ci/run
installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
NOT_SOURCE = (".git", ".venv", "var", "screenshots", "node_modules", "__pycache__", "bench", "tests")

# Words a template may show as they are: names, protocols, codes.
ALLOWED = {"BYOK", "Chat", "API", "OAuth2", "OAuth", "Azure", "OpenAI", "CSV", "URL", "ID", "HTTP", "GET", "TOTP"}
VISIBLE_ATTRIBUTES = re.compile(r'(?:placeholder|title|aria-label|alt|data-confirm|label)="([^"]*)"')


def untranslated(po: polib.POFile) -> list[str]:
    return [entry.msgid for entry in po if not entry.obsolete and (not entry.translated() or "fuzzy" in entry.flags)]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict[str, polib.POFile]:
    """The catalogues as `make messages` would leave them, made in a copy so the checkout is untouched."""
    if shutil.which("xgettext") is None:
        pytest.fail("xgettext not found: install GNU gettext (apt-get install gettext)", pytrace=False)
    copy = tmp_path_factory.mktemp("source") / "app"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    ignores = [f"--ignore={name}" for name in NOT_SOURCE]
    env = {**os.environ, "DEBUG": "true"}
    for domain in ("django", "djangojs"):
        command = [sys.executable, "manage.py", "makemessages", "-d", domain, "-l", "zh_Hans", "--no-location"]
        subprocess.run([*command, *ignores], cwd=copy, env=env, check=True, capture_output=True)
    folder = copy / "locale" / "zh_Hans" / "LC_MESSAGES"
    return {domain: polib.pofile(str(folder / f"{domain}.po")) for domain in ("django", "djangojs")}


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_every_string_in_the_code_has_a_zh_hans_translation(extracted, domain):
    missing = untranslated(extracted[domain])
    assert not missing, f"{len(missing)} {domain} strings without a zh-Hans translation (or fuzzy): {missing[:20]}"


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_the_committed_catalogue_has_no_untranslated_or_fuzzy_entry(domain):
    po = polib.pofile(str(ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / f"{domain}.po"))
    assert untranslated(po) == []


def english_outside_translate(source: str) -> list[str]:
    """Latin words a reader would see in a template's source, outside translation tags, code and variables."""
    text = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|{#.*?#}", " ", source, flags=re.S)
    text = re.sub(r"{%\s*block\s+\w*class\s*%}.*?{%\s*endblock\s*%}", " ", text, flags=re.S)
    text = re.sub(r"{%\s*blocktrans(late)?\b.*?{%\s*endblocktrans(late)?\s*%}", " ", text, flags=re.S)
    text = re.sub(r"{%\s*trans(late)?\s.*?%}", " ", text, flags=re.S)
    text = re.sub(r"<(script|style|code|pre)\b.*?</\1>", " ", text, flags=re.S | re.I)
    attributes = VISIBLE_ATTRIBUTES.findall(text)
    text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
    words = []
    for part in [text, *attributes]:
        part = re.sub(r"{%.*?%}|{{.*?}}", " ", part, flags=re.S)
        part = re.sub(r"https?://\S+|&\w+;", " ", part)
        words += [w for w in re.findall(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]", part) if w not in ALLOWED]
    return words


def test_no_template_shows_english_outside_translate_tags():
    found = {}
    for path in sorted(TEMPLATES.rglob("*")):
        if path.is_file() and path.suffix in (".html", ".txt"):
            words = english_outside_translate(path.read_text(encoding="utf-8"))
            if words:
                found[str(path.relative_to(ROOT))] = words[:8]
    assert found == {}, "wrap these in {% translate %} or {% blocktranslate %}"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("<p>Hello there</p>", ["Hello", "there"]),
        ('<input placeholder="Search chats">', ["Search", "chats"]),
        ("{% translate 'Hello' %} <b>{{ user.name }}</b>", []),
        ('<svg aria-label="{% translate "Tokens per day" %}"></svg>', []),
        ("{% blocktranslate %}Hi {{ name }}{% endblocktranslate %}", []),
        ("<code>GET /models</code> BYOK Chat", []),
        ('{% block main_class %}page narrow{% endblock %}<a href="https://example.com/x">→</a>', []),
    ],
)
def test_the_english_finder_finds_what_a_reader_would_see(source, words):
    assert english_outside_translate(source) == words
