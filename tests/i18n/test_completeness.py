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

import django
import polib
import pytest
from django.apps import apps
from django.contrib import admin
from django.utils import translation

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


# The libraries whose messages people see here: Django's forms and validators, its auth (password rules, the
# password pages) and admin, and allauth's account and two-factor pages.
LIBRARIES = ["django/conf", "django/contrib/auth", "django/contrib/admin", "allauth"]
# Their messages that read the same in Chinese (their own zh_Hans catalogues keep them so): symbols, units, names.
SAME_IN_CHINESE = {"…", ":?.!", ":", "IPv4", "IPv6", "URL", "%s KB", "%s MB", "%s GB", "%s TB", "%s PB", "a.m.", "p.m."}
SAME_IN_CHINESE |= {"AM", "PM", "%(class_name)s %(instance)s", "WebAuthn", "Passkey"}


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_message_of_the_libraries_we_use_has_a_zh_hans_translation(library):
    """Django's or allauth's own catalogue, or ours for what theirs lacks (project/catalog_gaps.py)."""
    site_packages = Path(django.__file__).resolve().parent.parent
    english = polib.pofile(str(site_packages / library / "locale" / "en" / "LC_MESSAGES" / "django.po"))
    with translation.override("zh-hans"):
        missing = [
            entry.msgid
            for entry in english
            if not entry.obsolete and entry.msgid not in SAME_IN_CHINESE and _in_english(entry)
        ]
    assert missing == [], f"{len(missing)} messages of {library} shown in English to zh-Hans readers: {missing[:20]}"


def _in_english(entry: polib.POEntry) -> bool:
    if entry.msgid_plural:
        if entry.msgctxt:
            shown = translation.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 2)
        else:
            shown = translation.ngettext(entry.msgid, entry.msgid_plural, 2)
        return shown in (entry.msgid, entry.msgid_plural)
    shown = translation.pgettext(entry.msgctxt, entry.msgid) if entry.msgctxt else translation.gettext(entry.msgid)
    return shown == entry.msgid


def test_the_admin_names_every_app_and_model_in_zh_hans():
    """The admin's index lists each registered model under its app; a model without verbose names showed its class
    name, and one without a plural got an English "s" ("个人 API 密钥s")."""

    def names(model) -> list[str]:
        app = apps.get_app_config(model._meta.app_label)
        return [str(app.verbose_name), str(model._meta.verbose_name), str(model._meta.verbose_name_plural)]

    english = {}
    with translation.override("en"):
        for model in admin.site._registry:
            english[model] = names(model)
    with translation.override("zh-hans"):
        shown = {model: names(model) for model in admin.site._registry}
    same = [f"{model._meta.label}: {name}" for model in shown for name in set(shown[model]) & set(english[model])]
    assert same == []
