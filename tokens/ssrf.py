"""Refuse user-typed URLs that point at this network rather than a public API.

Checked when a URL is saved and again on every connection (see `tokens.transport`),
so a name that later resolves somewhere private (DNS rebinding) is still refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


class UnsafeURL(ValueError):
    """The URL may not be used as an upstream; the message says why, for the user."""


def _allowlisted(host: str) -> bool:
    return host.lower() in {h.lower() for h in settings.UPSTREAM_ALLOWLIST}


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are an IPv4 address
_REFUSED_V6 = (
    ipaddress.ip_network("64:ff9b:1::/48"),  # RFC 8215 local-use NAT64: translates to whatever the operator routes
    ipaddress.ip_network("2002::/16"),  # RFC 3056 6to4: embeds an IPv4 address
    ipaddress.ip_network("2001::/32"),  # RFC 4380 Teredo: embeds an IPv4 address
    ipaddress.ip_network("::/96"),  # RFC 4291 2.5.5.1 IPv4-compatible (deprecated)
    ipaddress.ip_network("fec0::/10"),  # RFC 3879 site-local (deprecated, still routed on some networks)
)


def address_is_public(address: str) -> bool:
    """Whether an IP address is a public unicast address, including the IPv4 address inside IPv6 forms.

    IPv4-mapped and NAT64 addresses are judged by the IPv4 address they carry; 6to4, Teredo,
    IPv4-compatible, local-use NAT64 and site-local addresses are refused outright.
    """
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6:
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif any(ip in network for network in _REFUSED_V6):
            return False
    return ip.is_global and not ip.is_multicast


def check_address(host: str, address: str) -> None:
    """Refuse a resolved address unless it is public or the host is explicitly trusted."""
    if settings.ALLOW_INSECURE_UPSTREAMS or _allowlisted(host):
        return
    if not address_is_public(address):
        message = _("%(host)s resolves to a private or reserved address (%(address)s); that is not allowed.") % {
            "host": host,
            "address": address,
        }
        ip = ipaddress.ip_address(address.split("%")[0])  # link-local holds the cloud metadata service: no hint
        if not (ip.is_link_local or (ip.version == 6 and ip.ipv4_mapped and ip.ipv4_mapped.is_link_local)):
            message = f"{message} {local_server_hint()}"
        raise UnsafeURL(message)


def local_server_hint() -> str:
    """What a person can do about a refused local server: the operator decides, not the form."""
    return _(
        "A server on your own network or on plain http (such as Ollama on http://localhost:11434) can be used "
        "only after an administrator adds its host name to UPSTREAM_ALLOWLIST."
    )


def _checked(host: str, infos: list) -> list[str]:
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        check_address(host, address)
    return addresses


def resolve_checked(host: str, port: int) -> list[str]:
    """Resolve host and return its addresses if every one passes the guard; raise UnsafeURL otherwise.

    Transports connect to these addresses (never resolving again), so no TCP handshake ever reaches
    an address that was not checked, and DNS cannot change between check and connect.
    """
    try:
        return _checked(host, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"Could not resolve {host}.") from exc


async def aresolve_checked(host: str, port: int) -> list[str]:
    """resolve_checked for the event loop (the loop's resolver runs in a thread)."""
    loop = asyncio.get_running_loop()
    try:
        return _checked(host, await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"Could not resolve {host}.") from exc


def check_url(url: str) -> str:
    """Validate a user-typed upstream URL; return it normalised, or raise UnsafeURL."""
    try:
        parts = urlsplit(url.strip())
        host, port = (parts.hostname or "").rstrip(".").lower(), parts.port
    except ValueError as exc:  # a port that is not a number 0-65535, a bracketed host that is no IPv6 address
        raise UnsafeURL(_("Enter a full URL starting with https://.")) from exc
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeURL(_("Enter a full URL starting with https://."))
    if parts.username or parts.password:
        raise UnsafeURL(_("Leave user names and passwords out of the URL."))
    insecure_ok = settings.ALLOW_INSECURE_UPSTREAMS or _allowlisted(host)
    if parts.scheme != "https" and not insecure_ok:
        refusal = _("Only https:// URLs are allowed.")  # its own literal: xgettext reads no f-string
        raise UnsafeURL(f"{refusal} {local_server_hint()}")
    if host in METADATA_HOSTS and not insecure_ok:
        raise UnsafeURL(_("Cloud metadata addresses are not allowed."))
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(_("Could not find the host %(host)s.") % {"host": host}) from exc
    for info in infos:
        check_address(host, str(info[4][0]))
    return url.strip().rstrip("/")
