"""Refuse user-typed URLs that point at this network rather than a public API.

Checked when a URL is saved and again on every connection (see `tokens.transport`),
so a name that later resolves somewhere private (DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


class UnsafeURL(ValueError):
    """The URL may not be used as an upstream; the message says why, for the user."""


def _allowlisted(host: str) -> bool:
    return host.lower() in {h.lower() for h in settings.UPSTREAM_ALLOWLIST}


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_address(host: str, address: str) -> None:
    """Refuse a resolved address unless it is public or the host is explicitly trusted."""
    if settings.ALLOW_INSECURE_UPSTREAMS or _allowlisted(host):
        return
    if not address_is_public(address):
        raise UnsafeURL(f"{host} resolves to a private or reserved address ({address}); that is not allowed.")


def check_url(url: str) -> str:
    """Validate a user-typed upstream URL; return it normalised, or raise UnsafeURL."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeURL("Enter a full URL starting with https://.")
    if parts.username or parts.password:
        raise UnsafeURL("Leave user names and passwords out of the URL.")
    insecure_ok = settings.ALLOW_INSECURE_UPSTREAMS or _allowlisted(host)
    if parts.scheme != "https" and not insecure_ok:
        raise UnsafeURL("Only https:// URLs are allowed.")
    if host in METADATA_HOSTS and not insecure_ok:
        raise UnsafeURL("Cloud metadata addresses are not allowed.")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"Could not find the host {host}.") from exc
    for info in infos:
        check_address(host, info[4][0])
    return url.strip().rstrip("/")
