"""What the sandbox remembers: accounts, ExoPhones, flows, SIP users, calls, requests, faults.

Everything is a pydantic model so that the optional SQLite store can keep it as JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IST = timezone(timedelta(hours=5, minutes=30))

# Magic numbers: the last four digits of a dialled PSTN number decide how it answers.
OUTCOMES_BY_SUFFIX = {"0001": "busy", "0002": "no-answer", "0003": "failed"}
MAX_LOGGED_REQUESTS = 10_000
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")
CAUSE_CODES = {
    "busy": "USER_BUSY",
    "no-answer": "NO_ANSWER",
    "failed": "CALL_REJECTED",
    "unregistered": "USER_NOT_REGISTERED",
    "canceled": "ORIGINATOR_CANCEL",
}

FLOW_URL = re.compile(
    r"^https?://my\.exotel\.com/(?P<sid>[^/]+)/exoml/start_voice/(?P<flow>\d+)/?$"
)


def now_ist() -> datetime:
    return datetime.now(IST)


def exotel_time(moment: datetime) -> str:
    """Exotel's ``YYYY-MM-DD HH:MM:SS``, in IST."""
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def last_ten(number: str) -> str:
    """Exotel's numbers compare on their last ten digits (``+91…``, ``0…`` and bare forms)."""
    return "".join(ch for ch in number if ch.isdigit())[-10:]


def sip_user(number: str) -> str | None:
    """``sip:alice`` or ``sip:alice@domain`` → ``alice``; ``None`` for a PSTN number."""
    if not number.lower().startswith("sip:"):
        return None
    return number[4:].split("@", 1)[0]


def pstn_outcome(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    return OUTCOMES_BY_SUFFIX.get(digits[-4:], "completed")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Account(Record):
    sid: str
    api_key: str
    api_token: str
    # Whether Calls/connect takes StreamUrl (Exotel enables it per account; 403 otherwise).
    connect_voice_ai: bool = True


class ExoPhone(Record):
    number: str
    account_sid: str
    flow_id: str | None = None


# 30 s of PCM16 at 24 kHz, in base64.
MAX_UTTERANCE_CHARS = 1_920_000


class CallerScript(Record):
    """How the simulated caller talks to a voice bot; what is unset comes from the applet's
    script, then from the sandbox's settings (``EXOPLANE_SANDBOX_CALLER_*``)."""

    turns: int | None = Field(default=None, ge=0, le=100)
    # Base64 PCM16 mono at the stream's sample rate; turn n speaks utterances[n % len].
    utterances: list[str] | None = Field(default=None, min_length=1, max_length=20)
    reply_timeout_seconds: float | None = Field(default=None, gt=0, le=600)
    silence_seconds: float | None = Field(default=None, gt=0, le=60)
    talk_seconds: float | None = Field(default=None, gt=0, le=14_400)
    open_line: bool | None = None

    @field_validator("utterances")
    @classmethod
    def _pcm16_in_base64(cls, value: list[str] | None) -> list[str] | None:
        for n, text in enumerate(value or []):
            if len(text) > MAX_UTTERANCE_CHARS:
                raise ValueError(f"utterances[{n}] is over 30 s of 24 kHz audio")
            try:
                pcm = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"utterances[{n}] is not valid base64") from None
            if not pcm or len(pcm) % 2:
                raise ValueError(f"utterances[{n}] is not whole PCM16 samples")
        return value

    @model_validator(mode="after")
    def _silent_only_on_an_open_line(self) -> CallerScript:
        if self.turns == 0 and self.open_line is not True:
            raise ValueError("turns may be 0 only with open_line: true (the caller just listens)")
        return self

    def over(self, base: CallerScript | None) -> CallerScript:
        """This script, with what it leaves unset taken from ``base``."""
        if base is None:
            return self
        mine = self.model_dump(exclude_none=True)
        return CallerScript(**{**base.model_dump(exclude_none=True), **mine})


class Applet(Record):
    """One step of a flow. ``next`` names the applet that follows (default: the one below)."""

    id: str | None = None
    type: Literal["passthru", "connect", "voicebot", "hangup"]
    url: str | None = None
    # Connect without a dynamic URL: the numbers to dial, and how.
    numbers: list[str] = Field(default_factory=list)
    parallel: bool = False
    record: bool = False
    next: str | None = None
    # Passthru: where a 302 answer leads (a 200 leads to ``next``).
    on_302: str | None = None
    # Connect: where the flow goes when nobody answered (answered leads to ``next``).
    on_no_answer: str | None = None
    # Voicebot: how the simulated caller talks to the bot.
    caller: CallerScript | None = None


class Flow(Record):
    id: str
    account_sid: str
    name: str = ""
    applets: list[Applet]


class SipUser(Record):
    account_sid: str
    username: str
    registered: bool
    answers: bool = True
    updated_at: str = ""


class Leg(Record):
    number: str
    status: str
    cause: str | None = None
    on_call_seconds: int = 0


class Step(Record):
    """What one applet did, for inspection: the request made and what came of it."""

    at: str
    applet: str
    type: str
    request: str | None = None
    status: int | None = None
    outcome: str
    detail: dict[str, Any] = Field(default_factory=dict)


class SandboxCall(Record):
    sid: str
    account_sid: str
    from_number: str
    to_number: str
    caller_id: str
    direction: str
    flow_id: str | None = None
    # Connect Voice AI: the bot's socket, straight after the answer, instead of a flow.
    stream_url: str | None = None
    stream_name: str | None = None
    time_limit: int | None = None  # TimeLimit: the longest the call may last, in seconds
    ring_timeout: int | None = None  # TimeOut: how long the first leg may ring
    custom_field: str | None = None
    status_callback: str | None = None
    callback_events: list[str] = Field(default_factory=list)
    callback_json: bool = False
    record: bool = False
    recording_channels: str = "single"
    status: str = "queued"
    talk_seconds: float = 5
    # Decided through the control API before the call ends: overrides the magic numbers.
    outcome: str | None = None
    answer: str | None = None
    # How the caller talks to a voice bot on this call (over the flow's script).
    caller: CallerScript | None = None
    created_at: datetime = Field(default_factory=now_ist)
    updated_at: datetime = Field(default_factory=now_ist)
    start_time: datetime | None = None
    end_time: datetime | None = None
    recording_url: str | None = None
    legs: list[Leg] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    streams: list[dict[str, Any]] = Field(default_factory=list)
    callbacks_sent: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def duration(self) -> int | None:
        if self.start_time is None or self.end_time is None:
            return None
        return max(0, round((self.end_time - self.start_time).total_seconds()))

    def details(self, *, extended: bool = False) -> dict[str, Any]:
        """The call in Exotel's v1 field names; ``extended`` adds ``Details`` (``details=true``)."""
        document: dict[str, Any] = {
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
        if extended:
            document["Details"] = {
                "ConversationDuration": self.duration or 0,
                **{f"Leg{n}Status": leg.status for n, leg in enumerate(self.legs[:2], 1)},
                "Legs": [
                    {"Leg": {"Id": n, "OnCallDuration": leg.on_call_seconds}}
                    for n, leg in enumerate(self.legs, 1)
                ],
            }
        return document


class Fault(Record):
    """Injected on one route: a status, added latency, dropped or duplicated callbacks."""

    route: str
    status: int | None = None
    latency_seconds: float = 0.0
    # Calls/connect: the call is placed at once, but the answer to the request leaves this
    # much later, as over a slow network.
    reply_latency_seconds: float = 0.0
    drop_callbacks: bool = False
    duplicate_callbacks: bool = False
    probability: float = 1.0

    def fires(self) -> bool:
        return random.random() < self.probability


def new_call_sid() -> str:
    return uuid.uuid4().hex


class Store(Protocol):
    """Where the sandbox's records outlive the process (``None`` keeps them in memory only)."""

    def put(self, kind: str, key: str, body: str) -> None: ...

    def load(self, kind: str) -> list[str]: ...

    def clear(self) -> None: ...

    def delete_up_to(self, kind: str, key: str) -> None: ...

    def last_key(self, kind: str) -> int: ...


class SandboxState:
    """Every record the sandbox holds, written through to its store when it has one."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.accounts: dict[str, Account] = {}
        self.exophones: dict[str, ExoPhone] = {}  # by the number's last ten digits
        self.flows: dict[str, Flow] = {}  # by "account/flow id"
        self.sip_users: dict[str, SipUser] = {}  # by "account/username"
        self.calls: dict[str, SandboxCall] = {}
        self.requests: list[dict[str, Any]] = []
        self._logged = 0  # requests logged since the start (or the last reset): the log's keys
        self.faults: dict[str, Fault] = {}
        # Per account: monotonic times of the Calls API requests in the last minute.
        self.recent: dict[str, list[float]] = {}
        if store is not None:
            self._load(store)

    def _load(self, store: Store) -> None:
        for body in store.load("account"):
            account = Account.model_validate_json(body)
            self.accounts[account.sid] = account
        for body in store.load("exophone"):
            phone = ExoPhone.model_validate_json(body)
            self.exophones[last_ten(phone.number)] = phone
        for body in store.load("flow"):
            flow = Flow.model_validate_json(body)
            self.flows[f"{flow.account_sid}/{flow.id}"] = flow
        for body in store.load("sip_user"):
            user = SipUser.model_validate_json(body)
            self.sip_users[f"{user.account_sid}/{user.username}"] = user
        for body in store.load("fault"):
            fault = Fault.model_validate_json(body)
            self.faults[fault.route] = fault
        calls = [SandboxCall.model_validate_json(body) for body in store.load("call")]
        for call in sorted(calls, key=lambda call: call.created_at):  # the order they came in
            if call.status not in TERMINAL:
                # The sandbox stopped during this call: it ended then, as a dropped call would.
                call.status = "failed"
                call.end_time = call.updated_at
                self._put("call", call.sid, call)
            self.calls[call.sid] = call
        for body in store.load("request"):
            self.requests.append(json.loads(body))
        self._logged = store.last_key("request")

    def _put(self, kind: str, key: str, record: BaseModel) -> None:
        if self.store is not None:
            self.store.put(kind, key, record.model_dump_json())

    def add_account(self, account: Account) -> None:
        self.accounts[account.sid] = account
        self._put("account", account.sid, account)

    def add_exophone(self, phone: ExoPhone) -> None:
        self.exophones[last_ten(phone.number)] = phone
        self._put("exophone", last_ten(phone.number), phone)

    def add_flow(self, flow: Flow) -> None:
        key = f"{flow.account_sid}/{flow.id}"
        self.flows[key] = flow
        self._put("flow", key, flow)

    def flow(self, account_sid: str, flow_id: str) -> Flow | None:
        return self.flows.get(f"{account_sid}/{flow_id}")

    def set_sip_user(self, user: SipUser) -> None:
        key = f"{user.account_sid}/{user.username}"
        self.sip_users[key] = user
        self._put("sip_user", key, user)

    def sip_user(self, account_sid: str, username: str) -> SipUser | None:
        return self.sip_users.get(f"{account_sid}/{username}")

    def set_fault(self, fault: Fault) -> None:
        self.faults[fault.route] = fault
        self._put("fault", fault.route, fault)

    def save_call(self, call: SandboxCall) -> None:
        self.calls[call.sid] = call
        self._put("call", call.sid, call)

    def log(self, entry: dict[str, Any]) -> None:
        """One request the sandbox received or made; secrets are redacted by the caller.

        The log keeps the latest ``MAX_LOGGED_REQUESTS``, so a long-running sandbox does not
        grow without bound."""
        self._logged += 1
        self.requests.append(entry)
        if self.store is not None:
            self.store.put("request", f"{self._logged:012d}", json.dumps(entry, default=str))
        excess = len(self.requests) - MAX_LOGGED_REQUESTS
        if excess > 0:
            del self.requests[:excess]
            if self.store is not None:
                self.store.delete_up_to("request", f"{self._logged - len(self.requests):012d}")

    def reset(self) -> None:
        self.accounts.clear()
        self.exophones.clear()
        self.flows.clear()
        self.sip_users.clear()
        self.calls.clear()
        self.requests.clear()
        self._logged = 0
        self.faults.clear()
        self.recent.clear()
        if self.store is not None:
            self.store.clear()
