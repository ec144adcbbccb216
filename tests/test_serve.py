"""``exoplane serve`` as a person runs it: the banner, the port, the URLs it hands out, its log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, make_settings
from tests.factories import customer_with_token, register_app


def wait_for(condition: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {condition}")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "server-home"


@pytest.fixture
def server_without_public_url(
    home: Path, server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    monkeypatch.delenv("EXOPLANE_PUBLIC_URL", raising=False)
    process = ServerProcess(home, server_env)
    yield process
    process.stop()


def test_the_banner_names_the_address_and_the_docs(
    server_without_public_url: ServerProcess,
) -> None:
    banner = server_without_public_url.output().splitlines()[0]
    url = server_without_public_url.base_url

    assert banner.startswith(f"exoplane serving on {url} (API docs at {url}/docs;")
    assert httpx.get(f"{url}/docs").status_code == 200


async def test_flow_urls_use_the_served_port_when_no_public_url_is_set(
    server_without_public_url: ServerProcess, home: Path, server_env: dict[str, str]
) -> None:
    settings = make_settings(home, server_env["EXOPLANE_DATABASE_URL"])
    base_url = server_without_public_url.base_url

    async with httpx.AsyncClient(base_url=base_url) as client:
        customer = await customer_with_token(client, settings)
        app = await register_app(client, customer)
        response = await client.get(
            f"/v2/integrations/{customer.id}/apps/{app.id}/flow-urls",
            headers={"Authorization": app.token},
        )

    assert response.status_code == 200, response.text
    urls = response.json()["data"]
    assert urls["connect_applet_url"].startswith(f"{base_url}/v2/integrations/call/route/")
    for url in urls["passthru_urls"].values():
        assert url.startswith(f"{base_url}/v2/integrations/call/inbound_call/")


def test_every_line_after_the_banner_is_json_including_uvicorns_own(
    server_without_public_url: ServerProcess,
) -> None:
    server = server_without_public_url
    # Not HTTP at all: uvicorn itself logs a warning about it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(b"NOT HTTP\r\n\r\n")
        connection.recv(1024)
    wait_for("uvicorn's warning", lambda: "Invalid HTTP request" in server.output())
    server.stop()

    lines = server.output().splitlines()[1:]
    entries = [json.loads(line) for line in lines]
    warning = next(entry for entry in entries if "Invalid HTTP request" in entry["event"])
    assert warning["logger"] == "uvicorn.error"
    assert warning["level"] == "warning"


def run_serve(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exoplane", "serve", *args],
        env={**os.environ, "EXOPLANE_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_in_use_is_one_line_and_no_banner(home: Path, server_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_serve(home, server_env, "--port", str(port))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"exoplane: cannot listen on http://127.0.0.1:{port}: Address already in use\n"
    )


def test_serve_in_json_says_where_the_docs_are(home: Path, server_env: dict[str, str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exoplane", "serve", "--port", str(port), "--json"],
        env={**os.environ, "EXOPLANE_HOME": str(home), **server_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = json.loads(process.stdout.readline())
        # The banner comes once the port is bound: it answers (soon) rather than refusing.
        wait_for("the server", lambda: _answers(f"http://127.0.0.1:{port}/healthz"))
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    assert banner["url"] == f"http://127.0.0.1:{port}"
    assert banner["docs"] == f"http://127.0.0.1:{port}/docs"
    assert banner["database"] == server_env["EXOPLANE_DATABASE_URL"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.TransportError:
        return False
