"""``exoplane demo`` as a user runs it: a child process with its own throw-away database."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.waiting import WAIT_SECONDS

DEMO_SECONDS = 60
SECTIONS = (
    "1. Setting up: a customer, an app, two agents, webhooks, Exotel",
    "2. Setting up the voice bot",
    "3. Inbound call to alice's ExoPhone",
    "4. Inbound call to bob's ExoPhone",
    "5. Voice-bot test call",
    "6. Stream-mode test call",
    "7. Click-to-call",
    "Result",
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a deployment's settings point: the demo must write nothing here."""
    return tmp_path_factory.mktemp("deployment")


@pytest.fixture(scope="module")
def demos(
    tmp_path_factory: pytest.TempPathFactory, deployment: Path
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Both forms of the demo, started together so that they take the time of one."""
    # The demo makes its own database and servers; nothing of the test run's may leak in.
    clean = {name: value for name, value in os.environ.items() if not name.startswith("EXOPLANE_")}
    # A deployment's settings in the environment must not reach the demo either.
    deployed = {**clean, **deployment_environment(deployment)}
    runs = {
        form: subprocess.Popen(
            [sys.executable, "-m", "exoplane", "demo", *args],
            cwd=tmp_path_factory.mktemp(f"demo-{form}"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for form, args, env in (("text", (), clean), ("json", ("--json",), deployed))
    }
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
        run.communicate()


def deployment_environment(directory: Path) -> dict[str, str]:
    """Settings of a real deployment that would break the demo, or be written to, if used."""
    return {
        "EXOPLANE_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:9/elsewhere",
        "EXOPLANE_REDIS_URL": "redis://127.0.0.1:9/0",
        "EXOPLANE_RATE_LIMIT": "1/minute",
        "EXOPLANE_MEDIA_BASIC_AUTH": "key:token",
        "EXOPLANE_SANDBOX_DATABASE": str(directory / "sandbox.db"),
        "EXOPLANE_SANDBOX_CALLS_PER_MINUTE": "1",
        "EXOPLANE_SANDBOX_RING_SECONDS": "600",
        "EXOPLANE_HOME": str(directory / "home"),
    }


def finished(run: subprocess.Popen[str]) -> str:
    """The demo's standard output once it has exited 0 within the time allowed."""
    stdout, stderr = run.communicate(timeout=DEMO_SECONDS)
    assert run.returncode == 0, stdout + stderr
    return stdout


def test_the_demo_tells_every_section_and_passes_every_check(
    demos: dict[str, subprocess.Popen[str]],
) -> None:
    transcript = finished(demos["text"])

    for title in SECTIONS:
        assert f"\n{title}" in transcript, title
    assert "checks passed" in transcript
    assert "FAIL" not in transcript


def test_the_demo_as_json_is_one_parseable_document_that_says_ok(
    demos: dict[str, subprocess.Popen[str]], deployment: Path
) -> None:
    document = json.loads(finished(demos["json"]))  # run with a deployment's environment

    assert list(deployment.iterdir()) == []

    assert document["ok"] is True
    sections = [event["section"] for event in document["events"] if "section" in event]
    assert all(any(shown.startswith(title) for shown in sections) for title in SECTIONS)
    checks = [event for event in document["events"] if event.get("who") == "check"]
    assert checks
    assert all(check["passed"] for check in checks)


async def test_the_demo_with_keep_prints_the_console_sign_in_and_leaves_it_browsable(
    tmp_path: Path,
) -> None:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("EXOPLANE_")}
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exoplane",
        "demo",
        "--keep",
        cwd=tmp_path,
        env=clean,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert run.stdout is not None
    transcript: list[str] = []
    try:
        async with asyncio.timeout(DEMO_SECONDS):
            while not transcript or not transcript[-1].strip().startswith("console   password"):
                line = (await run.stdout.readline()).decode()
                assert line, "the demo ended:\n" + "".join(transcript)
                transcript.append(line)
        text = "".join(transcript)
        assert "FAIL" not in text
        console_url = re.search(r"open (http://127\.0\.0\.1:\d+/console) ", text)
        assert console_url, text
        password = transcript[-1].split("password", 1)[1].strip()
        base = console_url.group(1).removesuffix("/console")
        async with httpx.AsyncClient(base_url=base, timeout=WAIT_SECONDS) as browser:
            form = await browser.get("/console/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token
            signed = await browser.post(
                "/console/login",
                data={"email": "demo@example.com", "password": password, "csrf_token": token[1]},
            )
            assert signed.status_code == 303, signed.text
            dids = await browser.get("/console/dids")
            assert dids.status_code == 200
            assert "+918047491803" in dids.text
        run.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT_SECONDS):
            assert await run.wait() == 0
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
