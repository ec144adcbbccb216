"""The URL policy (docs/url-policy.md): one set of rules for every URL exoplane sends traffic to
or hands to Exotel and browsers, applied to every such field through the real API.

Everything here stays offline: refused hosts are IP literals or ``localhost`` names (resolved
from the hosts file), and accepted public hosts are IP literals, which are never looked up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import idna
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import Url

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.urls import (
    CORE_FLEET,
    EXOTEL_API,
    EXOTEL_FLOW,
    STREAM,
    WEBHOOK,
    UrlKind,
    UrlRefused,
    check_url,
    is_forbidden_address,
)
from tests.conftest import make_settings
from tests.factories import RegisteredApp, app_with_token
from tests.voicebot.factories import DIDS, INTEGRATION, SETTINGS, create_operator

# Refused whatever EXOPLANE_ALLOW_PRIVATE_NETWORKS says: not a well-formed URL for any field.
MALFORMED = (
    "http://127.0.0.1%2509/",
    "http://exa%6dple.com/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://127.1/",
    "http://127.0.0.1./",
    "http://public.example@127.0.0.1/",
    "http://user:secret@93.184.215.14/",
    "http://127.0.0.1\\@public.example/",
    "http://exa\tmple.com/",
    "http://example.com/a b",
    "http://[fe80::1%25eth0]/",
    "http://[::1/",
    "http://example.com:0/",
    "http://example.com:65536/",
    "http://example.com:port/",
    "http://" + "a" * 64 + ".com/",
    "http://" + ".".join(["a" * 60] * 5) + "/",
    "http://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/",
    "http://under_score.example.com/",
    "ftp://files.example.com/x",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://93.184.215.14:70/",
    "//93.184.215.14/x",
    "93.184.215.14/x",
    "https://93.184.215.14/" + "a" * 2048,
)
# Refused by default, accepted when private networks are allowed.
NON_PUBLIC = (
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest",
    "http://127.0.0.1:8080/x",
    "http://localhost/x",
    "http://app.localhost/x",
    "http://10.0.0.1/x",
    "http://172.16.5.4/x",
    "http://192.168.1.1/x",
    "http://100.64.0.1/x",
    "http://0.0.0.0/x",
    "http://224.0.0.1/x",
    "http://240.0.0.1/x",
    "http://[::1]/x",
    "http://[::]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:a9fe:a9fe]/x",
    "http://[2002:7f00:1::]/x",
    "http://[fe80::1]/x",
    "http://[fc00::1]/x",
)
PUBLIC = "https://93.184.215.14/hook"
ALL_KINDS = {
    "webhook": WEBHOOK,
    "stream": STREAM,
    "flow": EXOTEL_FLOW,
    "core_fleet": CORE_FLEET,
    "api_base_url": EXOTEL_API,
}


# --- the rules, without a server ----------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS.values(), ids=ALL_KINDS.keys())
@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("allow_private", [False, True], ids=["strict", "private"])
def test_a_malformed_url_is_refused_for_every_kind(
    url: str, kind: UrlKind, allow_private: bool
) -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url(url, "the_field", kind, allow_private=allow_private)

    assert refused.value.status == 400
    assert refused.value.code == "invalid_url"
    assert refused.value.field == "the_field"
    assert refused.value.message.startswith(
        f"'the_field' must be {kind.requirement(allow_private)}"
    )


@pytest.mark.parametrize("kind", ALL_KINDS.values(), ids=ALL_KINDS.keys())
@pytest.mark.parametrize("url", NON_PUBLIC)
def test_a_non_public_url_is_refused_by_default_and_accepted_when_private_is_allowed(
    url: str, kind: UrlKind
) -> None:
    url = url.replace("http://", "https://", 1)  # https suits every kind, api_base_url too

    with pytest.raises(UrlRefused) as refused:
        check_url(url, "the_field", kind, allow_private=False)

    assert refused.value.code == "forbidden_target"
    assert "of a public host" in refused.value.message
    check_url(url, "the_field", kind, allow_private=True)


def test_api_base_url_must_be_https_unless_private_networks_are_allowed() -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url("http://93.184.215.14", "api_base_url", EXOTEL_API, allow_private=False)

    assert refused.value.message.startswith(
        "'api_base_url' must be an https URL of a public host: the scheme http:"
    )
    check_url("http://93.184.215.14", "api_base_url", EXOTEL_API, allow_private=True)


@pytest.mark.parametrize("url", ["https://core.example.com/?x=1", "https://core.example.com/#a"])
def test_a_core_fleet_entry_takes_no_query_or_fragment(url: str) -> None:
    with pytest.raises(UrlRefused, match="base URL"):
        check_url(url, "core_fleet.0", CORE_FLEET, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/popup?x=1#top",
        "HTTPS://Hooks.Example.com/popup",
        "http://93.184.215.14:8443/a%20b",
        "https://[2606:4700::1111]/hook",
        "https://bücher.example/hook",
        "https://xn--bcher-kva.example/hook",
        "https://a.example.com./hook",
    ],
)
def test_a_well_formed_public_url_is_accepted(url: str) -> None:
    check_url(url, "popup_url", WEBHOOK, allow_private=False)


@given(st.ip_addresses())
def test_every_ip_literal_is_refused_exactly_when_it_is_not_public(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    host = str(address) if address.version == 4 else f"[{address}]"
    url = f"https://{host}/hook"

    if is_forbidden_address(address):
        with pytest.raises(UrlRefused):
            check_url(url, "popup_url", WEBHOOK, allow_private=False)
    else:
        check_url(url, "popup_url", WEBHOOK, allow_private=False)
    check_url(url, "popup_url", WEBHOOK, allow_private=True)


HOST_PIECES = st.sampled_from(
    ["127", "0", "1", "169", "254", "0x7f", "0177", "2130706433", "10", ".", ".", ":", "@", "%",
     "%25", "25", "[", "]", "::1", "ffff", "a", "example", "com", "localhost", "ü", "\uff41",
     "_", "-", "\\", "/", "#", "?", " ", "\t", "xn--"]
)  # fmt: skip


@hypothesis_settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["http", "https", "ws", "HTTP", "ftp"]),
    st.lists(HOST_PIECES, min_size=1, max_size=8).map("".join),
    st.sampled_from(["", ":80", ":0", ":99999", ":8080"]),
)
def test_an_accepted_url_names_the_same_public_host_for_a_browser(
    scheme: str, host: str, port: str
) -> None:
    url = f"{scheme}://{host}{port}/hook"
    try:
        parts = check_url(url, "streaming_url", STREAM, allow_private=False)
    except UrlRefused:
        return
    # Accepted: the WHATWG parser browsers and Exotel's clients use reads the same host,
    # and that host is no private literal.
    browser_host = Url(url).host or ""
    ours = idna.encode(parts.hostname or "", uts46=True).decode("ascii")
    assert browser_host.strip("[]") == (str(ipaddress.ip_address(ours)) if ":" in ours else ours), (
        url
    )
    try:
        address = ipaddress.ip_address(browser_host.strip("[]"))
    except ValueError:
        name = browser_host.rstrip(".")
        assert name != "localhost", url
        assert not name.endswith(".localhost"), url
    else:
        assert not is_forbidden_address(address), url


@given(st.text(max_size=80))
def test_any_text_is_either_accepted_or_refused_with_a_400(text: str) -> None:
    for kind in ALL_KINDS.values():
        try:
            check_url(text, "flow_url", kind, allow_private=False)
        except UrlRefused:
            continue
        assert text == text.strip()


# --- every field, through the API ---------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One URL field: how to write a value to it, and how it answers."""

    name: str
    write: Callable[[httpx.AsyncClient, dict[str, Any], str], Awaitable[httpx.Response]]
    legacy: bool = False
    # api_base_url takes a bare host name and adds https:// (SPEC §6.3).
    takes_bare_hosts: bool = False

    def refuses(self, url: str) -> bool:
        return not (self.takes_bare_hosts and "://" not in url)

    def __str__(self) -> str:
        return self.name


def _settings_field(name: str) -> Field:
    async def write(client: httpx.AsyncClient, ctx: dict[str, Any], url: str) -> httpx.Response:
        app: RegisteredApp = ctx["app"]
        path = f"/v2/integrations/{app.customer_id}/apps/{app.id}/settings"
        return await client.put(path, headers={"Authorization": app.token}, json={name: url})

    return Field(name, write)


def _app_setting_key(key: str, name: str) -> Field:
    async def write(client: httpx.AsyncClient, ctx: dict[str, Any], url: str) -> httpx.Response:
        app: RegisteredApp = ctx["app"]
        return await client.post(
            "/v2/integrations/app_setting",
            headers={"Authorization": app.token},
            json={"Key": key, "Value": url},
        )

    return Field(f"{name} (app_setting {key})", write, legacy=True)


async def _new_did(client: httpx.AsyncClient, ctx: dict[str, Any], url: str) -> httpx.Response:
    ctx["numbers"] += 1
    body = {"number": f"+9180474{ctx['numbers']:05d}", "flow_url": url}
    return await client.post(DIDS, headers=ctx["operator"], json=body)


async def _did_update(client: httpx.AsyncClient, ctx: dict[str, Any], url: str) -> httpx.Response:
    path = f"{DIDS}/{ctx['did_id']}"
    return await client.put(path, headers=ctx["operator"], json={"flow_url": url})


async def _core_fleet(client: httpx.AsyncClient, ctx: dict[str, Any], url: str) -> httpx.Response:
    body = {"core_fleet": [PUBLIC, url]}
    return await client.put(SETTINGS, headers=ctx["operator"], json=body)


async def _api_base(client: httpx.AsyncClient, ctx: dict[str, Any], url: str) -> httpx.Response:
    return await client.put(INTEGRATION, headers=ctx["operator"], json={"api_base_url": url})


FIELDS = [
    *(
        _settings_field(name)
        for name in (
            "popup_url",
            "missed_call_url",
            "callback_url",
            "recording_url",
            "streaming_url",
        )
    ),
    _app_setting_key("popup", "popup_url"),
    _app_setting_key("missedCall", "missed_call_url"),
    _app_setting_key("callback", "callback_url"),
    _app_setting_key("streaming", "streaming_url"),
    Field("flow_url", _new_did),
    Field("flow_url (update)", _did_update),
    Field("core_fleet.1", _core_fleet),
    Field("api_base_url", _api_base, takes_bare_hosts=True),
]


def _field_name(field: Field) -> str:
    return field.name.split(" ", 1)[0]


@pytest.fixture
async def private_client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # The home of the ``settings`` fixture: the same server key, as processes sharing a
    # database have.
    private = make_settings(tmp_path / "home", database_url, allow_private_networks=True)
    async with LifespanManager(create_app(private)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _context(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    operator = await create_operator(settings, "root@example.com", "super_admin")
    did = await client.post(DIDS, headers=operator.headers, json={"number": "+918047400000"})
    assert did.status_code == 201, did.text
    return {
        "app": await app_with_token(client, settings),
        "operator": operator.headers,
        "did_id": did.json()["id"],
        "numbers": 0,
    }


def _refusal(field: Field, url: str, response: httpx.Response) -> str | None:
    """What is wrong with ``response`` as a refusal of ``url``, or None."""
    name = _field_name(field)
    if response.status_code != 400:
        return f"{url!r}: {response.status_code} {response.text[:200]}"
    body = response.json()
    if field.legacy:  # the Exotel-compatible envelope; its wire field is Value
        message = body["Error"]
        if "'Value'" in message:
            return None
    else:
        if body.get("success") is not False:
            return f"{url!r}: not the error envelope: {body}"
        message = body["error"]["message"]
        if body["error"].get("field") != name:
            return f"{url!r}: names {body['error'].get('field')!r}, not {name!r}"
    if name not in message:
        return f"{url!r}: the message does not name {name}: {message}"
    return None


async def _stored(client: httpx.AsyncClient, ctx: dict[str, Any], field: Field) -> Any:
    app: RegisteredApp = ctx["app"]
    path = f"/v2/integrations/{app.customer_id}/apps/{app.id}/settings"
    name = _field_name(field)
    if name in ("popup_url", "missed_call_url", "callback_url", "recording_url", "streaming_url"):
        got = await client.get(path, headers={"Authorization": app.token})
        return got.json()["data"]["settings"][name]
    if name == "flow_url":
        got = await client.get(INTEGRATION, headers=ctx["operator"])
        return sorted(str(did["flow_url"]) for did in got.json()["dids"])
    if name == "core_fleet.1":
        got = await client.get(SETTINGS, headers=ctx["operator"])
        return got.json()["core_fleet"]
    got = await client.get(INTEGRATION, headers=ctx["operator"])
    return got.json()["api_base_url"]


@pytest.mark.parametrize("field", FIELDS, ids=str)
async def test_every_url_field_refuses_malformed_and_non_public_urls_and_stores_nothing(
    client: httpx.AsyncClient, settings: Settings, field: Field
) -> None:
    ctx = await _context(client, settings)
    before = await _stored(client, ctx, field)

    problems = [
        problem
        for url in (*MALFORMED, *NON_PUBLIC)
        if field.refuses(url)
        and (problem := _refusal(field, url, await field.write(client, ctx, url))) is not None
    ]

    assert problems == []
    assert await _stored(client, ctx, field) == before


@pytest.mark.parametrize("field", FIELDS, ids=str)
async def test_every_url_field_accepts_a_public_url(
    client: httpx.AsyncClient, settings: Settings, field: Field
) -> None:
    ctx = await _context(client, settings)

    response = await field.write(client, ctx, PUBLIC)

    assert response.status_code in (200, 201), response.text
    stored = await _stored(client, ctx, field)
    expected = "https://93.184.215.14" if field.name == "api_base_url" else PUBLIC
    assert expected == stored or expected in stored


@pytest.mark.parametrize("field", FIELDS, ids=str)
async def test_with_private_networks_allowed_every_url_field_accepts_non_public_urls_only(
    private_client: httpx.AsyncClient, settings: Settings, field: Field
) -> None:
    ctx = await _context(private_client, settings)

    refused = [
        url
        for url in NON_PUBLIC
        if (await field.write(private_client, ctx, url)).status_code not in (200, 201)
    ]
    problems = [
        problem
        for url in MALFORMED
        if field.refuses(url)
        and (problem := _refusal(field, url, await field.write(private_client, ctx, url)))
        is not None
    ]

    assert refused == []
    assert problems == []


async def test_a_refusal_says_what_the_field_must_be_in_its_own_words(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ctx = await _context(client, settings)

    api_base = await _api_base(client, ctx, "https://169.254.169.254")
    streaming = await _settings_field("streaming_url").write(
        client, ctx, "http://169.254.169.254/x"
    )
    fleet = await _core_fleet(client, ctx, "ftp://core.example.com")

    assert api_base.json()["error"]["message"] == (
        "'api_base_url' must be an https URL of a public host: "
        "169.254.169.254 is a cloud metadata address"
    )
    assert api_base.json()["error"]["code"] == "forbidden_target"
    assert streaming.json()["error"]["message"].startswith(
        "'streaming_url' must be an absolute http(s) or ws(s) URL of a public host"
    )
    assert fleet.json()["error"]["message"] == (
        "'core_fleet.1' must be an http or https base URL of a public host: "
        "the scheme ftp: is not one of http, https"
    )


# --- EXOPLANE_CORE_FLEET ------------------------------------------------------------------


def _settings_from_env_file(tmp_path: Path, lines: str) -> Settings:
    env_file = tmp_path / ".env"
    env_file.write_text(lines)
    return Settings(_env_file=env_file)


@pytest.mark.parametrize("url", [*MALFORMED[:20], *NON_PUBLIC])
def test_the_core_fleet_variable_refuses_what_the_api_refuses(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match=r"core_fleet\.1"):
        _settings_from_env_file(tmp_path, f"EXOPLANE_CORE_FLEET={PUBLIC},{url}\n")


@pytest.mark.parametrize("url", NON_PUBLIC)
def test_the_core_fleet_variable_takes_non_public_urls_when_private_is_allowed(
    tmp_path: Path, url: str
) -> None:
    settings = _settings_from_env_file(
        tmp_path, f"EXOPLANE_CORE_FLEET={url}\nEXOPLANE_ALLOW_PRIVATE_NETWORKS=true\n"
    )

    assert settings.core_fleet == [url]
