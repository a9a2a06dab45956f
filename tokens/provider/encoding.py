"""Bodies a provider compressed although we asked for none (`Accept-Encoding: identity`).

Some CDN edges (Cloudflare in front of a provider) gzip anyway, with or without a Content-Encoding header.
Bodies are inflated in pieces of at most PIECE bytes, so a few compressed kilobytes can never become one huge
string: every caller counts the inflated pieces against its own cap.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

from django.utils.translation import gettext as _

from tokens.provider.errors import ProviderError

PIECE = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
# RFC 9110 8.4.1: gzip, and deflate (zlib-wrapped; wbits 47 also takes gzip, which some servers send under it).
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 47}


def decompressor(content_encoding: str, start: bytes = b"") -> zlib._Decompress | None:
    """A decompressor for the body, None when it is not compressed; ProviderError for a coding we cannot read.

    `start`: the body's first bytes, to recognise gzip sent without a Content-Encoding header.
    """
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return zlib.decompressobj(31) if start.startswith(GZIP_MAGIC) else None
    if coding not in _WBITS:
        raise ProviderError(
            "bad_response",
            _("The provider compressed its answer (%(coding)s) although we asked it not to.") % {"coding": coding[:30]},
        )
    return zlib.decompressobj(_WBITS[coding])


def inflate(decoder: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Yield what `data` inflates to, PIECE bytes at a time; ProviderError if it is not valid compressed data."""
    try:
        while data:
            piece = decoder.decompress(data, PIECE)
            data = decoder.unconsumed_tail
            if piece:
                yield piece
    except zlib.error as exc:
        raise ProviderError("bad_response", _("The provider sent a compressed answer that could not be read.")) from exc


async def inflated(raw: AsyncIterator[bytes], decoder: zlib._Decompress) -> AsyncIterator[bytes]:
    async for chunk in raw:
        for piece in inflate(decoder, chunk):
            yield piece
