"""With a signature required, the DID's websocket_url carries the capability the core checks."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerProcess, make_settings
from tests.voicebot.factories import create_operator


@pytest.fixture
def signed_core(tmp_path: Path, server_env: dict[str, str]) -> Iterator[ServerProcess]:
    env = {
        **server_env,
        "EXOPLANE_MEDIA_REQUIRE_SIGNATURE": "true",
        # The fleet entry is this core on 127.0.0.1, a private address.
        "EXOPLANE_ALLOW_PRIVATE_NETWORKS": "true",
    }
    process = ServerProcess(tmp_path / "core", env)
    yield process
    process.stop()


async def test_the_derived_websocket_url_opens_a_core_that_requires_a_signature(
    tmp_path: Path, database_url: str, signed_core: ServerProcess
) -> None:
    operator = await create_operator(
        make_settings(tmp_path / "cli", database_url), "root@example.com", "super_admin"
    )
    async with httpx.AsyncClient(base_url=signed_core.base_url, headers=operator.headers) as api:
        await api.put("/api/v1/settings", json={"core_fleet": [signed_core.base_url]})
        did = (
            await api.post(
                "/api/v1/integrations/exotel/dids",
                json={"number": "08047491899", "bot_id": "echo"},
            )
        ).json()
    signed = did["websocket_url"]
    audio = bytes(3200)

    async with connect(signed) as stream:
        await stream.send(json.dumps({"event": "connected"}))
        await stream.send(
            json.dumps({"event": "start", "stream_sid": "S1", "start": {"call_sid": "C1"}})
        )
        payload = base64.b64encode(audio).decode()
        await stream.send(
            json.dumps({"event": "media", "stream_sid": "S1", "media": {"payload": payload}})
        )
        echoed = json.loads(await stream.recv())

    unsigned = signed.split("?", 1)[0]
    async with connect(unsigned) as refused:
        with pytest.raises(ConnectionClosed):
            await refused.recv()

    assert signed.startswith(signed_core.base_url.replace("http://", "ws://") + "/exotel/echo?sig=")
    assert urlsplit(signed).query.startswith("sig=")
    assert base64.b64decode(echoed["media"]["payload"]) == audio
    assert refused.close_code == 4401
