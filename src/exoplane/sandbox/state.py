"""What the sandbox remembers: accounts, calls, every request, injected faults."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

IST = timezone(timedelta(hours=5, minutes=30))

# Magic numbers: the last four digits of the number dialled first decide the outcome.
OUTCOMES_BY_SUFFIX = {"0001": "busy", "0002": "no-answer", "0003": "failed"}
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")


def exotel_time(moment: datetime) -> str:
    """Exotel's ``YYYY-MM-DD HH:MM:SS``, in IST."""
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Account:
    sid: str
    api_key: str
    api_token: str


@dataclass
class SandboxCall:
    sid: str
    account_sid: str
    from_number: str
    to_number: str
    caller_id: str
    url: str | None
    direction: str
    custom_field: str | None
    status_callback: str | None
    callback_events: list[str]
    callback_json: bool
    record: bool
    status: str = "queued"
    outcome: str = "completed"
    talk_seconds: int = 5
    created_at: datetime = field(default_factory=lambda: datetime.now(IST))
    updated_at: datetime = field(default_factory=lambda: datetime.now(IST))
    start_time: datetime | None = None
    end_time: datetime | None = None
    recording_url: str | None = None
    callbacks_sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> int | None:
        if self.start_time is None or self.end_time is None:
            return None
        return max(0, round((self.end_time - self.start_time).total_seconds()))

    def details(self) -> dict[str, Any]:
        """The call in Exotel's v1 field names."""
        return {
            "Sid": self.sid,
            "ParentCallSid": None,
            "DateCreated": exotel_time(self.created_at),
            "DateUpdated": exotel_time(self.updated_at),
            "AccountSid": self.account_sid,
            "To": self.to_number,
            "From": self.from_number,
            "PhoneNumberSid": self.caller_id,
            "Status": self.status,
            "StartTime": exotel_time(self.start_time) if self.start_time else None,
            "EndTime": exotel_time(self.end_time) if self.end_time else None,
            "Duration": self.duration,
            "Price": None,
            "Direction": self.direction,
            "AnsweredBy": None,
            "ForwardedFrom": None,
            "CallerName": None,
            "Uri": f"/v1/Accounts/{self.account_sid}/Calls/{self.sid}.json",
            "RecordingUrl": self.recording_url,
        }


@dataclass
class Fault:
    """Injected on one route: a status, added latency, dropped callbacks, with a probability."""

    route: str
    status: int | None = None
    latency_seconds: float = 0.0
    drop_callbacks: bool = False
    probability: float = 1.0

    def fires(self) -> bool:
        return random.random() < self.probability


@dataclass
class SandboxState:
    accounts: dict[str, Account] = field(default_factory=dict)
    calls: dict[str, SandboxCall] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)
    # Per account: times of the Calls requests in the last minute (200 allowed).
    recent: dict[str, list[float]] = field(default_factory=dict)

    def reset(self) -> None:
        self.accounts.clear()
        self.calls.clear()
        self.requests.clear()
        self.faults.clear()
        self.recent.clear()


def new_call_sid() -> str:
    return uuid.uuid4().hex


def outcome_for(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    return OUTCOMES_BY_SUFFIX.get(digits[-4:], "completed")
