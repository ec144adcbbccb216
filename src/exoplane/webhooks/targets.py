"""Delivery-time checks of webhook targets, under the URL policy of ``exoplane.urls``.

URLs are checked when saved (``exoplane.urls.check_target``) and again here at connect time,
through the resolver the delivery client uses, so a name that later resolves elsewhere is caught.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from exoplane.urls import is_forbidden_address


class ForbiddenTarget(Exception):
    """The URL's host is (or resolves to) an address webhooks must not reach."""


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
