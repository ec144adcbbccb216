"""One policy for every URL exoplane sends traffic to or hands to Exotel and browsers.

A URL is accepted when it is short enough, has no spaces, control characters or backslashes,
uses a scheme its field takes, carries no credentials, has a valid port and a valid host (an
IDNA host name in normal form, a dotted-decimal IPv4 address or a bracketed IPv6 address; no
percent-encoding, no numeric shorthands such as ``2130706433``), and, unless
``EXOPLANE_ALLOW_PRIVATE_NETWORKS=true``, neither names nor resolves to a loopback, private,
link-local, metadata, unspecified, multicast or reserved address. docs/url-policy.md lists the
fields it covers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import idna

from exoplane.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
RESOLVE_TIMEOUT_SECONDS = 5.0
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address) for address in ("169.254.169.254", "fd00:ec2::254")
)
# A host whose last label is a number is read as an IPv4 address by browsers (WHATWG).
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")


@dataclass(frozen=True, slots=True)
class UrlKind:
    """What a field holds: the schemes it takes, and how to say so in an error."""

    schemes: tuple[str, ...]
    description: str
    # Schemes (and their description) taken instead when private networks are allowed.
    private_schemes: tuple[str, ...] | None = None
    private_description: str | None = None
    # A base URL has paths appended to it, so it takes no query or fragment.
    base: bool = False

    def allowed_schemes(self, allow_private: bool) -> tuple[str, ...]:
        return self.private_schemes if allow_private and self.private_schemes else self.schemes

    def requirement(self, allow_private: bool) -> str:
        if allow_private:
            return self.private_description or self.description
        return f"{self.description} of a public host"


WEBHOOK = UrlKind(("http", "https"), "an absolute http or https URL")
STREAM = UrlKind(("http", "https", "ws", "wss"), "an absolute http(s) or ws(s) URL")
EXOTEL_FLOW = UrlKind(("http", "https"), "an absolute http or https URL")
CORE_FLEET = UrlKind(("http", "https"), "an http or https base URL", base=True)
EXOTEL_API = UrlKind(
    ("https",),
    "an https URL",
    private_schemes=("http", "https"),
    private_description="an http or https URL",
)


class UrlRefused(BadRequest):
    """A URL the policy refuses; ``message`` names the field and says what is wrong."""

    code = "invalid_url"


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` may not be a target, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return address_problem(embedded)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved, non-public address"
    return None


def is_forbidden_address(address: IPAddress) -> bool:
    return address_problem(address) is not None


def check_url(url: str, field: str, kind: UrlKind, *, allow_private: bool) -> SplitResult:
    """The URL's parts, or ``UrlRefused`` (400) naming the field. No name is resolved here."""
    parts, problem = _parse(url, kind, allow_private)
    if problem is None and parts is not None and not allow_private:
        problem = _literal_problem(parts.hostname or "")
        if problem is not None:
            raise _refused(field, kind, allow_private, problem, code="forbidden_target")
    if problem is not None or parts is None:
        raise _refused(field, kind, allow_private, problem or "it is not a URL")
    return parts


async def check_target(url: str, field: str, kind: UrlKind, *, allow_private: bool) -> str:
    """``check_url``, then refuse a host that resolves to a non-public address.

    A host that does not resolve now is accepted: webhook targets and the Exotel API are
    checked again each time exoplane connects to them.
    """
    parts = check_url(url, field, kind, allow_private=allow_private)
    if allow_private:
        return url
    host = parts.hostname or ""
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    try:
        addresses = await asyncio.wait_for(
            resolve(host, parts.port or default_port), RESOLVE_TIMEOUT_SECONDS
        )
    except OSError:
        return url
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            raise _refused(
                field,
                kind,
                allow_private,
                f"{host} resolves to {address}, {problem}",
                code="forbidden_target",
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


def _refused(
    field: str, kind: UrlKind, allow_private: bool, problem: str, *, code: str = "invalid_url"
) -> UrlRefused:
    return UrlRefused(
        f"'{field}' must be {kind.requirement(allow_private)}: {problem}", code=code, field=field
    )


def _parse(url: str, kind: UrlKind, allow_private: bool) -> tuple[SplitResult | None, str | None]:
    if len(url) > MAX_URL_LENGTH:
        return None, f"it is longer than {MAX_URL_LENGTH} characters"
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return None, "it contains a space or control character (percent-encode it in a path)"
    if "\\" in url:
        return None, "it contains a backslash"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return None, f"it is not a URL ({exc})"
    schemes = kind.allowed_schemes(allow_private)
    if not parts.scheme or not parts.netloc:
        return None, f"{url!r} is not an absolute URL such as {schemes[-1]}://example.com/path"
    if parts.scheme not in schemes:
        return None, f"the scheme {parts.scheme}: is not one of {', '.join(schemes)}"
    if "@" in parts.netloc:
        return None, "it carries a user name or password; no credentials belong in the URL"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return None, "its port is not a number from 1 to 65535"
    if kind.base and (parts.query or parts.fragment or "?" in url or "#" in url):
        return None, "a base URL takes no query or fragment"
    problem = _host_problem(parts.hostname or "", parts.netloc)
    return parts, problem


def _host_problem(host: str, netloc: str) -> str | None:
    if not host:
        return "it has no host"
    if "%" in host:
        return f"its host {host!r} contains percent-encoding or a zone id"
    if netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"its host [{host}] is not a valid IPv6 address"
        return None
    if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"its host {host!r} is not a dotted-decimal IPv4 address such as 203.0.113.7"
        return None
    try:
        encoded = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return f"its host {host!r} is not a valid host name"
    if len(encoded) > MAX_HOST_LENGTH:
        return f"its host is longer than {MAX_HOST_LENGTH} characters"
    if host not in (encoded, idna.decode(encoded)):
        return f"its host {host!r} is not in normal form (write {encoded})"
    return None


def _literal_problem(host: str) -> str | None:
    """Why a host is refused without resolving it: an IP literal or a ``localhost`` name."""
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is a loopback name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    problem = address_problem(address)
    return f"{host} is {problem}" if problem else None
