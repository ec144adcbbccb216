"""The deployment examples: the systemd units load cleanly, the environment file names real
settings, and docs/deployment.md links only to files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from exoplane.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
ENV_EXAMPLE = SYSTEMD / "exoplane.env.example"
GUIDE = ROOT / "docs" / "deployment.md"
# Where the units assume exoplane is installed.
INSTALLED = "/opt/exoplane/.venv/bin/exoplane"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not available, so the units cannot be verified")
    return found


def _exoplane_script() -> str:
    beside_python = Path(sys.executable).parent / "exoplane"
    found = str(beside_python) if beside_python.exists() else shutil.which("exoplane")
    assert found, "the exoplane console script is not installed"
    return found


def _loadable_copy(unit: Path, directory: Path) -> Path:
    """The unit as this machine can load it: its commands point at the installed script
    (verify refuses a missing binary) and it runs as the current user."""
    lines = []
    for line in unit.read_text().splitlines():
        if line.startswith(("User=", "Group=")):
            continue
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            line = line.replace(INSTALLED, _exoplane_script())
        lines.append(line)
    copy = directory / unit.name
    copy.write_text("\n".join(lines) + "\n")
    return copy


def _verify_problems(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about ``unit`` (not about the system's own units)."""
    result = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    about_unit = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(unit) in line or unit.name in line
    ]
    if result.returncode != 0:
        about_unit.append(f"exit status {result.returncode}: {result.stderr.strip()}")
    return about_unit


def test_there_is_a_unit_for_the_api_and_one_for_the_worker() -> None:
    assert [unit.name for unit in UNITS] == ["exoplane-api.service", "exoplane-worker.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_runs_the_installed_exoplane(unit: Path) -> None:
    commands = [
        line
        for line in unit.read_text().splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]
    assert commands
    assert all(line.split("=", 1)[1].startswith(f"{INSTALLED} ") for line in commands)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    assert _verify_problems(_loadable_copy(unit, tmp_path)) == []


def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    source = SYSTEMD / "exoplane-worker.service"
    copy = _loadable_copy(source, tmp_path)
    copy.write_text(copy.read_text().replace("\nRestart=", "\nRestrat="))
    problems = _verify_problems(copy)
    assert any("Restrat" in line for line in problems), problems


def _named_variables() -> set[str]:
    return set(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", ENV_EXAMPLE.read_text()))


def test_environment_example_names_only_real_settings() -> None:
    named = _named_variables()
    assert named
    unknown = {
        name for name in named if name.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
    }
    assert unknown == set()


def _example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith(ENV_PREFIX):
            name, _, value = line.partition("=")
            values[name.removeprefix(ENV_PREFIX).lower()] = value
    return values


def test_environment_example_is_valid_once_a_key_is_filled_in() -> None:
    values = _example_values()
    assert {"database_url", "redis_url", "secret_key", "public_url"} <= values.keys()
    Settings(**{**values, "secret_key": "k" * 48})  # type: ignore[arg-type]


def test_environment_example_placeholder_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(**_example_values())  # type: ignore[arg-type]


def test_deployment_guide_links_to_files_that_exist() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", GUIDE.read_text())
    local = [
        target.split("#", 1)[0]
        for target in targets
        if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]
    assert local
    missing = [target for target in local if not (GUIDE.parent / target).exists()]
    assert missing == []


def test_deployment_guide_links_to_every_example() -> None:
    text = GUIDE.read_text()
    for example in [*UNITS, ENV_EXAMPLE]:
        assert f"../deploy/systemd/{example.name}" in text
