"""The probes, and what the server's root address shows a person who opens it."""

from __future__ import annotations

import httpx


async def test_the_root_points_to_the_api_documentation(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    links = response.json()
    assert links["docs"] == "/docs"
    for path in (links["docs"], links["redoc"], links["openapi"], links["health"]):
        assert (await client.get(path)).status_code == 200, path
