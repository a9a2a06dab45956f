"""What goes wrong when people paste a secret: hidden characters, typographic dashes, line breaks.

Keys travel in HTTP headers, which carry only visible ASCII (RFC 9110 5.5); anything else either breaks
the request or makes the provider refuse a key that looks right on screen.
"""

from __future__ import annotations

import unicodedata

from django.utils.translation import gettext as _

_DASHES = {"\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe63", "\uff0d"}
_NAMES = {
    "\u200b": "zero-width space",
    "\u200c": "zero-width non-joiner",
    "\u200d": "zero-width joiner",
    "\u2060": "word joiner",
    "\ufeff": "byte order mark",
    "\u00a0": "no-break space",
    "\u00ad": "soft hyphen",
}


def secret_problem(value: str) -> str | None:
    """Return a message naming the first character that cannot be in a key (1-based position), or None.

    Leading and trailing spaces and line breaks are not problems: forms strip them.
    """
    for position, char in enumerate(value, start=1):
        if "!" <= char <= "~":
            continue
        code = f"U+{ord(char):04X}"
        if char in "\r\n":
            return _("The pasted value has a line break at position %(n)s. Paste it again as one line.") % {
                "n": position
            }
        if char in _DASHES:
            return _(
                "The pasted value has a typographic dash (%(code)s) at position %(n)s, not a plain hyphen “-”. "
                "Your editor or chat app may have changed it; copy the key from the provider again."
            ) % {"code": code, "n": position}
        if char in (" ", "\t"):
            return _("The pasted value has a space at position %(n)s. Keys have no spaces; paste it again.") % {
                "n": position
            }
        name = _NAMES.get(char) or unicodedata.name(char, "").lower() or _("invisible character")
        return _(
            "The pasted value has a hidden character (%(code)s, %(name)s) at position %(n)s. "
            "Delete it or copy the key from the provider again."
        ) % {"code": code, "name": name, "n": position}
    return None
