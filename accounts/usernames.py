"""User names that cannot pass for one another: NFKC, case folding and a homoglyph skeleton (Unicode TR39's idea).

`Ａlice` (fullwidth), `ALICE`, `аlice` (Cyrillic а), `aIice` (capital I) and `a1ice` all have one key (`allce`);
the key column is unique, so the database itself refuses a look-alike. The confusables table is confusable_homoglyphs'
copy of Unicode's confusables.txt; letters of other scripts are mapped to the Latin or common letter they imitate.
"""

from __future__ import annotations

import unicodedata
from functools import cache

from confusable_homoglyphs import categories, confusables

# Names the product or an operator could be mistaken for; "system" is the actor of the credential audit trail.
RESERVED = frozenset(
    {
        "system", "admin", "administrator", "root", "staff", "superuser", "support", "security", "moderator",
        "owner", "byok", "byokchat", "api", "anonymous", "nobody", "null", "none", "me", "help", "info",
        "noreply", "postmaster", "webmaster", "hostmaster", "abuse", "accounts", "settings", "usage",
    }
)  # fmt: skip
_PLAIN_SCRIPTS = {"LATIN", "COMMON"}


def normalize(username: str) -> str:
    """The form a user name is stored in: NFKC (fullwidth and compatibility letters become plain ones), trimmed."""
    return unicodedata.normalize("NFKC", username).strip()


@cache
def _prototype(char: str) -> str:
    if categories.alias(char) in _PLAIN_SCRIPTS:
        return char
    for glyph in confusables.confusables_data.get(char, []):
        if all(categories.alias(c) in _PLAIN_SCRIPTS for c in glyph["c"]):
            return glyph["c"].casefold()
    return char


# Latin letters and digits that most fonts draw alike (confusables.txt: I, l, 1 and | are "l", 0 is "O", "rn" is
# "m", "vv" is "w"). Applied after case folding, so i (a folded I) joins l: "aIice" and "a1ice" are "alice".
_LATIN_SEQUENCES = (("rn", "m"), ("vv", "w"))
_LATIN_LOOK_ALIKES = str.maketrans({"i": "l", "1": "l", "|": "l", "0": "o"})


def username_key(username: str) -> str:
    """The key two user names share when a reader could take one for the other; unique per account."""
    folded = normalize(username).casefold()
    key = unicodedata.normalize("NFKC", "".join(_prototype(char) for char in folded))
    for sequence, letter in _LATIN_SEQUENCES:
        key = key.replace(sequence, letter)
    return key.translate(_LATIN_LOOK_ALIKES)


@cache
def _reserved_keys() -> frozenset[str]:
    return frozenset(username_key(name) for name in RESERVED)


def is_reserved(username: str) -> bool:
    return username_key(username) in _reserved_keys()
