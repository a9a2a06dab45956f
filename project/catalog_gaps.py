"""Strings Django shows that its own Simplified Chinese catalogue lacks, named here so that `make messages` keeps
them in locale/zh_Hans, whose translations come first (LOCALE_PATHS).

Django 5.2 changed some messages (the password-length error's `%(min_length)d` became `%d`) and added others
before its zh_Hans catalogue caught up, so a Chinese reader saw them in English (the sign-up form's "This password
is too short", a few admin labels). tests/i18n/test_completeness.py checks every message of the Django apps we
use, so a gap after an upgrade fails CI and lands here. Nothing imports this module.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop, ngettext_lazy

GAPS = [
    ngettext_lazy(
        "This password is too short. It must contain at least %d character.",
        "This password is too short. It must contain at least %d characters.",
        "min_length",
    ),
    gettext_noop("%(model)s instance with %(field)s %(value)r is not a valid choice."),
    gettext_noop("Model name"),
    gettext_noop("Add link"),
    gettext_noop("Change or view list link"),
    gettext_noop("After you’ve created a user, you’ll be able to edit more user options."),
    gettext_noop("Error:"),
    gettext_noop("Forgotten your login credentials?"),
    gettext_noop("In case you’ve forgotten, you are:"),
]
