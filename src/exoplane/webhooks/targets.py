"""Which URLs webhooks may be sent to: no loopback, private, link-local or metadata hosts.

The check runs on the resolved addresses, at save time and again at connect time (through
the resolver the delivery client uses), so a name that later resolves elsewhere is caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from exoplane.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenTarget(Exception):
    """The URL's host is (or resolves to) an address webhooks must not reach."""


def is_forbidden_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_url_syntax(url: str, field: str) -> str:
    """An absolute http(s) URL with a host, or a 400 naming the field."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            f"'{field}' must be an absolute http or https URL, such as "
            f"https://example.com/hook; got {url!r}",
            code="invalid_url",
            field=field,
        )
    if parts.username or parts.password:
        raise BadRequest(
            f"'{field}' must not carry credentials in the URL", code="invalid_url", field=field
        )
    return url


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_target(url: str, field: str, *, allow_private: bool) -> str:
    """Refuse (400) a URL whose host is or resolves to a forbidden address.

    A host that does not resolve now is accepted: it is checked again at delivery.
    """
    check_url_syntax(url, field)
    if allow_private:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError:
        return url
    forbidden = [str(address) for address in addresses if is_forbidden_address(address)]
    if forbidden:
        raise BadRequest(
            f"'{field}' points at {host}, which resolves to a non-public address "
            f"({', '.join(forbidden)}); webhooks may only go to public hosts",
            code="forbidden_target",
            field=field,
        )
    return url


class PublicOnlyResolver(AbstractResolver):
    """An aiohttp resolver that refuses to hand out non-public addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [
            result
            for result in results
            if not is_forbidden_address(ipaddress.ip_address(result["host"]))
        ]
        if not allowed:
            raise ForbiddenTarget(f"{host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def resolver_for(allow_private: bool) -> Any:
    return DefaultResolver() if allow_private else PublicOnlyResolver()


def check_literal_host(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose host is a forbidden IP literal (no resolver runs for those)."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if is_forbidden_address(address):
        raise ForbiddenTarget(f"{host} is not a public address")
