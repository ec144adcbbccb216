"""The OpenAPI document tells the truth: who may call, what comes back, and offline docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from exoplane.app import create_app
from exoplane.config import Settings
from tests.factories import app_with_token, create_customer, user_body

OPEN_OPERATIONS = {
    ("post", "/v2/integrations/token"),
    ("get", "/v2/integrations/call/route/{app_id}"),
    ("get", "/v2/integrations/call/inbound_call/{app_id}"),
    ("post", "/v2/integrations/call/status/{call_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


@pytest.fixture
def document(settings: Settings) -> dict[str, Any]:
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def test_every_credential_has_a_security_scheme(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"customerToken", "appToken", "agentToken", "operatorApiKey"}
    assert all(
        scheme == {**scheme, "type": "http", "scheme": "bearer"} for scheme in schemes.values()
    )


def test_each_operation_names_the_credentials_it_accepts(document: dict[str, Any]) -> None:
    security = {(method, path): op.get("security") for method, path, op in operations(document)}
    assert security[("post", "/v2/integrations/app")] == [{"customerToken": []}]
    assert security[("delete", "/v2/integrations/app")] == [{"appToken": []}]
    assert security[("get", "/v2/integrations/usermapping")] == [
        {"appToken": []},
        {"agentToken": []},
    ]
    assert security[("get", "/v2/integrations/token")] == [
        {"customerToken": []},
        {"appToken": []},
        {"agentToken": []},
    ]
    assert security[("get", "/v2/integrations/{customer_id}/apps/{app_id}")] == [
        {"customerToken": []},
        {"appToken": []},
    ]
    assert security[("put", "/api/v1/settings")] == [{"operatorApiKey": []}]
    assert security[("get", "/api/v1/bots")] == [{"operatorApiKey": []}]
    for operation, required in security.items():
        if operation in OPEN_OPERATIONS:
            assert required is None, operation
        else:
            assert required, f"{operation} has no security requirement"
            for requirement in required:
                assert set(requirement) <= set(document["components"]["securitySchemes"])


def _empty_schemas(document: dict[str, Any], schema: Any, where: str) -> Iterator[str]:
    if isinstance(schema, dict):
        if schema == {}:
            yield where
        for key, value in schema.items():
            # Free-form JSON objects (a webhook's payload, an audit entry's details) are
            # described as such, with additionalProperties: true.
            if key != "additionalProperties":
                yield from _empty_schemas(document, value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _empty_schemas(document, value, f"{where}/{index}")


def test_no_success_body_is_an_empty_schema(document: dict[str, Any]) -> None:
    empty: list[str] = []
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                [(media_type, content)] = response["content"].items()
                assert media_type in ("application/json", "text/event-stream"), (method, path)
                schema = content["schema"]
                assert resolve(document, schema), f"{method} {path} {status}"
                empty += _empty_schemas(document, schema, f"{method} {path} {status}")
    for name, schema in document["components"]["schemas"].items():
        empty += _empty_schemas(document, schema, name)
    assert empty == []


def test_no_operation_documents_422(document: dict[str, Any]) -> None:
    assert "422" not in str(list(operations(document)))
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_error_status_has_the_envelope_of_its_path(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        statuses = {status for status in operation["responses"] if not status.startswith("2")}
        assert "400" in statuses, (method, path)
        if operation.get("security"):
            assert {"401", "403", "429"} <= statuses, (method, path)
        for status in statuses:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            envelope = resolve(document, schema)
            legacy = path.startswith("/v2/integrations/") and not path.startswith(
                "/v2/integrations/{customer_id}"
            )
            if (path, status) == ("/readyz", "503"):
                assert envelope["title"] == "Ready"
            elif not legacy:
                assert envelope["title"] == "ResourceFailure", (method, path, status)
                assert envelope["properties"]["success"]["const"] is False
            else:
                assert envelope["title"] == "LegacyFailure", (method, path, status)
                assert envelope["properties"]["Status"]["const"] == "Failed"


def test_upstream_and_conflict_statuses_are_documented(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert "502" in paths["/v2/integrations/call/outbound_call"]["post"]["responses"]
    assert (
        "502" in paths["/api/v1/integrations/exotel/dids/{did_id}/test-call"]["post"]["responses"]
    )
    assert "409" in paths["/v2/integrations/app"]["post"]["responses"]
    assert "409" in paths["/api/v1/integrations/exotel/dids"]["post"]["responses"]
    assert "413" in paths["/v2/integrations/usermapping"]["post"]["responses"]
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_a_legacy_success_documents_its_data(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v2/integrations/app"]["get"]
    envelope = resolve(
        document, operation["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert set(envelope["required"]) == {"RequestId", "Status", "Code", "Error", "Data"}
    data = envelope["properties"]["Data"]["anyOf"]
    assert resolve(document, data[0])["title"] == "AppData"
    assert resolve(document, data[1]["items"])["title"] == "AppData"


def _asset_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", html)
    urls += re.findall(r"""spec-url\s*=\s*["']([^"']+)["']""", html)
    return urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_load_every_asset_from_the_app(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "cdn" not in html.lower()
    assert "googleapis" not in html
    urls = _asset_urls(html)
    assert any(url.endswith(".js") for url in urls), urls
    assert any("openapi.json" in url for url in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from elsewhere"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content


async def test_the_served_document_is_the_completed_one(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "securitySchemes" in document["components"]
    assert "422" not in str(document["paths"])


async def test_a_whole_number_written_with_a_fraction_is_an_integer(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer_id, secret = await create_customer(settings)
    body = {"Id": customer_id, "Secret": secret, "Entity": "customer"}
    accepted = await client.post("/v2/integrations/token", json={**body, "TTLSeconds": 3600.0})
    assert accepted.status_code == 200, accepted.text
    refused = await client.post("/v2/integrations/token", json={**body, "TTLSeconds": 3600.5})
    assert refused.status_code == 400
    assert "TTLSeconds" in refused.json()["Error"]


def _request_schema(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    return resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])


def test_the_schemas_refuse_what_the_server_refuses(document: dict[str, Any]) -> None:
    settings_body = _request_schema(
        document, "put", "/v2/integrations/{customer_id}/apps/{app_id}/settings"
    )
    # Sent as null, a flag is refused; a URL sent as null is cleared.
    assert settings_body["properties"]["recording_enabled"]["type"] == "boolean"
    assert {"type": "null"} in settings_body["properties"]["popup_url"]["anyOf"]
    user = _request_schema(document, "post", "/v2/integrations/{customer_id}/apps/{app_id}/users")
    name = user["properties"]["name"]
    assert re.search(name["pattern"], "  ") is None
    assert re.search(name["pattern"], " Asha ")
    email = user["properties"]["email"]
    assert re.search(email["pattern"], "asha@example.com")
    assert re.search(email["pattern"], "asha@example") is None
    phone = user["properties"]["phone_number"]["anyOf"][0]
    assert re.search(phone["pattern"], "+91 98765-43210")
    assert re.search(phone["pattern"], "") is None
    assert re.search(phone["pattern"], "+919876543210ext5") is None
    assert user["properties"]["user_id"]["not"] == {"enum": [".", ".."]}


async def test_blank_and_malformed_text_is_refused_as_the_schema_says(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {"Authorization": app.token}
    for field, value in [("name", "   "), ("email", "asha@example"), ("phone_number", "")]:
        response = await client.post(
            app.users_path, headers=headers, json={**user_body(), field: value}
        )
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error"]["field"] == field
