"""What the customer, app and agent pages need because there is a browser: a typed
confirmation before a delete, and the forms and rows the pages show. The rules themselves are
the services' (``exoplane.admin``, ``exoplane.integrations``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exoplane.admin.apps import last_device
from exoplane.config import Settings
from exoplane.errors import BadRequest
from exoplane.integrations.schemas import WEBHOOK_URL_FIELDS, devices_resource
from exoplane.models import AppSettings, User
from exoplane.models.base import utcnow

# Where each URL goes in the app's Exotel flow (docs/webhooks.md, "Wiring an Exotel flow").
FLOW_PLACES = {
    "connect_applet_url": (
        "Connect applet URL",
        "Connect applet, as its dynamic URL: answers whom to dial",
    ),
    "popup": ("Passthru: incoming call", "A Passthru applet before the Connect applet"),
    "missedcall": ("Passthru: missed call", "A Passthru applet on the Connect's no-answer branch"),
    "incomingcallhungup": (
        "Passthru: call ended",
        "A Passthru applet after the Connect applet",
    ),
}
SETTINGS_URL_FIELDS = (*WEBHOOK_URL_FIELDS, "streaming_url")
# How long a new portal link may last, as the app's page offers it.
PORTAL_EXPIRIES = (
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
    (30 * 86_400, "30 days"),
)
SETTINGS_SWITCHES = ("recording_enabled", "streaming_enabled")


def check_typed_name(typed: str, name: str) -> None:
    """A delete goes ahead only once the name of what it deletes was typed in full."""
    if typed.strip() != name:
        raise BadRequest(
            f"Type the customer's name, {name}, to confirm the delete", field="confirm_name"
        )


def flow_url_rows(urls: dict[str, Any]) -> list[dict[str, str]]:
    """Each flow URL with its label and its place in the Exotel flow."""
    found = {"connect_applet_url": urls["connect_applet_url"], **urls["passthru_urls"]}
    return [
        {"key": key, "label": label, "place": place, "url": found[key]}
        for key, (label, place) in FLOW_PLACES.items()
        if key in found
    ]


def portal_expiry_choices(settings: Settings) -> list[tuple[str, str]]:
    """The expiries the page offers: those the configuration allows, and its default."""
    choices = {
        seconds: text
        for seconds, text in PORTAL_EXPIRIES
        if seconds <= settings.portal_link_max_seconds
    }
    for seconds in (settings.portal_link_default_seconds, settings.portal_link_max_seconds):
        choices.setdefault(seconds, f"{seconds} seconds")
    return [(str(seconds), choices[seconds]) for seconds in sorted(choices)]


def settings_form(row: AppSettings) -> dict[str, Any]:
    """The settings as the form shows them."""
    values: dict[str, Any] = {name: getattr(row, name) or "" for name in SETTINGS_URL_FIELDS}
    values.update({name: bool(getattr(row, name)) for name in SETTINGS_SWITCHES})
    return values


def settings_values(form: dict[str, str]) -> dict[str, Any]:
    """The form as seed 02's body: every field sent, a blank URL as null (clears it), a
    switch on when its box was ticked."""
    values: dict[str, Any] = {
        name: form.get(name, "").strip() or None for name in SETTINGS_URL_FIELDS
    }
    values.update({name: form.get(name) == "true" for name in SETTINGS_SWITCHES})
    return values


def agent_values(
    form: dict[str, str], names: Sequence[str], *, blank_is_null: bool = False
) -> dict[str, Any]:
    """The agent form as the resource-style user body: blank fields left out (or, when
    editing, blank numbers sent as null to clear them)."""
    values: dict[str, Any] = {}
    for name in names:
        value = form.get(name, "").strip()
        if value:
            values[name] = value
        elif blank_is_null and name in ("phone_number", "virtual_number"):
            values[name] = None
    return values


def agent_form(user: User) -> dict[str, str]:
    return {
        "name": user.name,
        "email": user.email,
        "phone_number": user.phone_number or "",
        "virtual_number": user.virtual_number or "",
        "role": user.role,
    }


def agent_rows(users: Sequence[User]) -> list[dict[str, Any]]:
    """Each agent with its devices, the SIP registration, and which device (if any) is the
    last one enabled, so its switch can say why it stays on."""
    now = utcnow()
    rows = []
    for user in users:
        devices = devices_resource(user, now=now, detailed=True)["devices"]
        rows.append(
            {
                "user_id": user.user_id,
                "name": user.name,
                "email": user.email,
                "phone_number": user.phone_number,
                "virtual_number": user.virtual_number,
                "role": user.role,
                "phone": devices["phone"],
                "sip": devices["sip"],
                "last_device": last_device(user),
            }
        )
    return rows
