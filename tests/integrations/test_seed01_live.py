"""Seed 01's own Python examples, run against a real `exoplane serve` process.

The snippets are the seed's, with only the base URL changed; the Authorization header carries
the bare token, as the seed sends it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from tests.conftest import ServerProcess


def create_customer_with_the_cli(server: ServerProcess) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "exoplane", "customers", "create", "--name", "Seed", "--json"],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    customer: dict[str, str] = json.loads(result.stdout)
    return customer


def token(base: str, entity: str, id_: str, secret: str) -> str:
    response = requests.post(
        f"{base}/v2/integrations/token",
        json={"Id": id_, "Secret": secret, "Entity": entity},
        timeout=10,
    )
    value: str = response.json()["Data"]
    return value


def test_seed01_python_examples_work_against_a_real_server(server: ServerProcess) -> None:
    base = server.base_url
    customer = create_customer_with_the_cli(server)
    customer_id, customer_secret = customer["CustomerID"], customer["CustomerSecret"]
    customer_auth_token = token(base, "customer", customer_id, customer_secret)

    # Register Application (seed 01, Python tab)
    url = f"{base}/v2/integrations/app"
    payload = json.dumps(
        {
            "AppName": "WebRTC",
            "ExotelAccountSid": "exoteldemo",
            "ExotelApiKey": "your_api_key",
            "ExotelApiToken": "your_api_token",
            "ExotelDomain": "mumbai",
            "IsActive": True,
        }
    )
    headers = {"Authorization": customer_auth_token, "Content-Type": "application/json"}
    response = requests.post(url, headers=headers, data=payload, timeout=10)
    created = response.json()
    assert created["Status"] == "Success"
    assert created["Data"]["AppSecret"]
    app_id, app_secret = created["Data"]["AppID"], created["Data"]["AppSecret"]
    app_auth_token = token(base, "app", app_id, app_secret)

    # Get Application Details (seed 01, Python tab)
    url = f"{base}/v2/integrations/app?entity=app"
    headers = {"Authorization": app_auth_token}
    response = requests.get(url, headers=headers, timeout=10)
    details = response.json()
    assert details["Code"] == 200
    assert details["Data"]["AppID"] == app_id
    assert "AppSecret" not in details["Data"]

    # List All Applications (seed 01, cURL tab, sent the same way)
    listed = requests.get(
        f"{base}/v2/integrations/app?entity=customer",
        headers={"Authorization": customer_auth_token},
        timeout=10,
    ).json()
    assert [app["AppID"] for app in listed["Data"]] == [app_id]

    # Delete Application (seed 01, cURL tab)
    deleted = requests.delete(
        f"{base}/v2/integrations/app", headers={"Authorization": app_auth_token}, timeout=10
    ).json()
    assert deleted["Data"] == "Deleted Successfully"

    gone = requests.get(f"{base}/v2/integrations/app", headers=headers, timeout=10)
    assert gone.status_code == 401

    server.stop()
    log = server.output()
    assert '"path": "/v2/integrations/app"' in log
    for secret in (
        customer_secret,
        customer_auth_token,
        app_secret,
        app_auth_token,
        "your_api_token",
        "your_api_key",
    ):
        assert secret not in log
