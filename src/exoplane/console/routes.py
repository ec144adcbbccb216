"""``/console``: each page parses its form, calls the service the API calls, and renders.

Every action has its twin in ``/api/v1`` (named in each docstring).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from exoplane.admin import service as admin
from exoplane.admin.schemas import OperatorCreate, OperatorUpdate, PasswordChange
from exoplane.console import service, traffic
from exoplane.console.auth import AdminConsole, SuperAdminConsole
from exoplane.console.errors import SignInFailed, SignInLimited
from exoplane.console.service import SESSION_COOKIE, SIGN_IN_COOKIE, SignedIn
from exoplane.console.templates import CONSOLE, live_page_response, redirect, render
from exoplane.db import Session
from exoplane.errors import BadRequest, ExoplaneError, describe_validation_errors
from exoplane.inputs import Int64, PathId
from exoplane.integrations.auth import client_key
from exoplane.integrations.calls import service as calls
from exoplane.integrations.calls.endpoints import LastEventId
from exoplane.integrations.calls.schemas import timeline_view
from exoplane.security import new_token
from exoplane.state import AppState, State
from exoplane.voicebot import service as voicebot
from exoplane.voicebot.schemas import (
    DidCreate,
    DidUpdate,
    FleetSettings,
    IntegrationUpdate,
    PlaceTestCall,
    audit_view,
    call_option,
)
from exoplane.voicebot.service import NewOperator

router = APIRouter(prefix=CONSOLE, include_in_schema=False)

# What a page says after a form sent the browser to it (``?done=<key>``); fixed texts, so a
# link cannot make the console say anything else.
FLASH = {
    "signed_out": "You have signed out.",
    "password_changed": "Your password has been changed; other sessions were signed out.",
    "exotel_saved": "Exotel credentials saved.",
    "did_added": "DID added.",
    "did_saved": "DID saved.",
    "did_deleted": "DID deleted.",
    "settings_saved": "Core fleet saved.",
    "operator_saved": "Operator saved.",
    "delivery_replayed": "Delivery queued to be sent again.",
    "replay_cancelled": "Replay cancelled.",
}
AUDIT_PAGE_SIZE = 50
CallSid = Annotated[str, Path(max_length=100)]


# --- helpers ------------------------------------------------------------------------------


def page(request: Request, signed: SignedIn, template: str, **context: Any) -> Response:
    status_code = context.pop("status_code", 200)
    return render(
        template,
        status_code=status_code,
        request=request,
        operator=signed.operator,
        is_super_admin=signed.operator.role == "super_admin",
        csrf_token=signed.csrf_token,
        flash=FLASH.get(request.query_params.get("done", "")),
        **context,
    )


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def filled(form: dict[str, str], *names: str) -> dict[str, str]:
    """The named fields that are not blank."""
    return {name: form[name] for name in names if form.get(name, "").strip()}


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The API's validation messages, each keyed by the field it is about."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        message, field = describe_validation_errors([{**error, "loc": ("body", *error["loc"])}])
        errors.setdefault(field or "", message)
    return errors


def error_fields(exc: ExoplaneError) -> dict[str, str]:
    field = (exc.field or "").split(".")[0]
    return {field: exc.message}


def _safe_next(target: str | None) -> str:
    """Only a console page: never another site (``//evil``) after signing in."""
    if target and target.startswith(CONSOLE) and not target.startswith("//"):
        return target
    return CONSOLE


def _cookie_secure(state: AppState) -> bool:
    return state.settings.public_url.startswith("https://")


# --- signing in and out -------------------------------------------------------------------


def _sign_in_page(
    request: Request,
    state: AppState,
    nonce: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    email: str = "",
) -> Response:
    response = render(
        "login.html",
        status_code=status_code,
        request=request,
        operator=None,
        csrf_token=service.csrf_token(state.capabilities, nonce),
        next=_safe_next(request.query_params.get("next")),
        error=error,
        email=email,
        flash=FLASH.get(request.query_params.get("done", "")),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        path=CONSOLE,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(state),
    )
    return response


@router.get("/login")
async def sign_in_form(request: Request, state: State) -> Response:
    """The sign-in page (the API signs in with an operator's API key instead)."""
    nonce = request.cookies.get(SIGN_IN_COOKIE) or new_token()
    return _sign_in_page(request, state, nonce)


@router.post("/login")
async def sign_in(request: Request, state: State, session: Session) -> Response:
    """Sign in with an operator's email and password."""
    form = await form_of(request)
    nonce = request.cookies.get(SIGN_IN_COOKIE)
    service.check_csrf(state.capabilities, nonce, form.get("csrf_token"))
    assert nonce is not None
    email = form.get("email", "")
    try:
        token = await service.sign_in(
            session,
            state.sign_in_limiter,
            email,
            form.get("password", ""),
            client_key(request),
        )
    except (SignInFailed, SignInLimited) as exc:
        return _sign_in_page(
            request, state, nonce, status_code=exc.status, error=exc.message, email=email
        )
    response = redirect(_safe_next(form.get("next")))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=state.settings.console_session_lifetime_seconds,
        path=CONSOLE,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(state),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=CONSOLE)
    return response


@router.post("/logout")
async def sign_out(session: Session, signed: AdminConsole) -> Response:
    """Sign out: the session ends on the server at once."""
    await service.sign_out(session, signed)
    response = redirect(f"{CONSOLE}/login?done=signed_out")
    response.delete_cookie(SESSION_COOKIE, path=CONSOLE)
    return response


@router.get("/password")
async def password_form(request: Request, signed: AdminConsole) -> Response:
    """Change your own password; twin: ``POST /api/v1/operators/me/password``."""
    return page(request, signed, "password.html", title="Password", errors={})


@router.post("/password")
async def change_password(request: Request, session: Session, signed: AdminConsole) -> Response:
    """Change your own password; twin: ``POST /api/v1/operators/me/password``."""
    form = await form_of(request)
    errors: dict[str, str] = {}
    try:
        body = PasswordChange.model_validate(
            {
                "current_password": form.get("current_password", ""),
                "new_password": form.get("new_password", ""),
            }
        )
        if form.get("new_password") != form.get("confirm_password"):
            errors["confirm_password"] = "The two new passwords differ"
        else:
            await admin.change_password(
                session, signed.operator, body.current_password, body.new_password
            )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        errors = error_fields(exc)
    if errors:
        return page(
            request, signed, "password.html", title="Password", errors=errors, status_code=400
        )
    await service.end_other_sessions(session, signed)
    return redirect(f"{CONSOLE}/password?done=password_changed")


# --- overview -----------------------------------------------------------------------------


@router.get("")
async def overview(
    request: Request, state: State, session: Session, signed: AdminConsole
) -> Response:
    """The set-up checklist; twins: ``GET /api/v1/integrations/exotel``, ``/settings``,
    ``/calls``, ``/bots``, and for the charts ``/api/v1/stats``."""
    checklist = await service.overview(session, state.settings, state.bots)
    charts = await traffic.call_charts_now(session, state)
    return page(request, signed, "overview.html", title="Overview", charts=charts, **checklist)


# --- Exotel -------------------------------------------------------------------------------


async def _exotel_page(
    request: Request,
    state: AppState,
    session: Session,
    signed: SignedIn,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    integration = await voicebot.integration_status(session, state.settings)
    return page(
        request,
        signed,
        "exotel.html",
        title="Exotel",
        integration=integration,
        errors=errors or {},
        form=form or {},
        status_code=status_code,
    )


@router.get("/exotel")
async def exotel(
    request: Request, state: State, session: Session, signed: AdminConsole
) -> Response:
    """The Exotel credentials (secrets never shown); twin: ``GET /api/v1/integrations/exotel``.
    An admin sees it read-only."""
    return await _exotel_page(request, state, session, signed)


@router.post("/exotel")
async def save_exotel(
    request: Request, state: State, session: Session, signed: SuperAdminConsole
) -> Response:
    """Save credentials; a blank secret keeps its stored value. Twin: ``PUT
    /api/v1/integrations/exotel``."""
    form = await form_of(request)
    try:
        body = IntegrationUpdate.model_validate(
            filled(form, "account_sid", "api_key", "api_token", "api_base_url")
        )
        await voicebot.update_integration(
            session, state.vault, state.settings, signed.operator, body
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        errors = error_fields(exc)
    else:
        return redirect(f"{CONSOLE}/exotel?done=exotel_saved")
    kept = {name: form.get(name, "") for name in ("account_sid", "api_base_url")}
    return await _exotel_page(
        request, state, session, signed, errors=errors, form=kept, status_code=400
    )


# --- DIDs ---------------------------------------------------------------------------------

DID_FIELDS = ("number", "label", "bot_id", "flow_url")
DIDS_PER_PAGE = 100


async def _dids_page(
    request: Request,
    state: AppState,
    session: Session,
    signed: SignedIn,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    after = request.query_params.get("after") or None
    dids, next_after = await voicebot.did_page(
        session, state.settings, state.capabilities, after=after, limit=DIDS_PER_PAGE
    )
    return page(
        request,
        signed,
        "dids.html",
        title="DIDs",
        dids=dids,
        next_after=next_after,
        first_page=after is None,
        bots=sorted(state.bots),
        errors=errors or {},
        form=form or {},
        status_code=status_code,
    )


@router.get("/dids")
async def dids(request: Request, state: State, session: Session, signed: AdminConsole) -> Response:
    """DIDs with their derived WebSocket URLs; twin: ``GET /api/v1/integrations/exotel``.
    An admin sees them read-only."""
    return await _dids_page(request, state, session, signed)


@router.post("/dids")
async def add_did(
    request: Request, state: State, session: Session, signed: SuperAdminConsole
) -> Response:
    """Add a DID; twin: ``POST /api/v1/integrations/exotel/dids``."""
    form = await form_of(request)
    try:
        body = DidCreate.model_validate(filled(form, *DID_FIELDS))
        await voicebot.add_did(session, state.settings, state.capabilities, signed.operator, body)
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        errors = error_fields(exc)
    else:
        return redirect(f"{CONSOLE}/dids?done=did_added")
    kept = {name: form.get(name, "") for name in DID_FIELDS}
    return await _dids_page(
        request, state, session, signed, errors=errors, form=kept, status_code=400
    )


@router.get("/dids/{did_id}")
async def edit_did_form(
    request: Request, state: State, session: Session, signed: SuperAdminConsole, did_id: PathId
) -> Response:
    """A DID's edit form."""
    did = await voicebot.did_detail(session, state.settings, state.capabilities, did_id)
    form = {name: did[name] or "" for name in DID_FIELDS}
    return page(
        request,
        signed,
        "did_edit.html",
        title=f"DID {did['number']}",
        did=did,
        bots=sorted(state.bots),
        form=form,
        errors={},
    )


@router.post("/dids/{did_id}")
async def update_did(
    request: Request, state: State, session: Session, signed: SuperAdminConsole, did_id: PathId
) -> Response:
    """Change a DID's label, bot or flow (a blank field clears it); twin: ``PUT
    /api/v1/integrations/exotel/dids/{did_id}``."""
    form = await form_of(request)
    values = {name: form.get(name, "").strip() or None for name in ("label", "bot_id", "flow_url")}
    try:
        body = DidUpdate.model_validate(values)
        await voicebot.update_did(
            session, state.settings, state.capabilities, signed.operator, did_id, body
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        errors = error_fields(exc)
    else:
        return redirect(f"{CONSOLE}/dids?done=did_saved")
    did = await voicebot.did_detail(session, state.settings, state.capabilities, did_id)
    kept = {"number": did["number"], **{name: form.get(name, "") for name in values}}
    return page(
        request,
        signed,
        "did_edit.html",
        title=f"DID {did['number']}",
        did=did,
        bots=sorted(state.bots),
        form=kept,
        errors=errors,
        status_code=400,
    )


@router.post("/dids/{did_id}/delete")
async def delete_did(session: Session, signed: SuperAdminConsole, did_id: PathId) -> Response:
    """Delete a DID; twin: ``DELETE /api/v1/integrations/exotel/dids/{did_id}``."""
    await voicebot.delete_did(session, signed.operator, did_id)
    return redirect(f"{CONSOLE}/dids?done=did_deleted")


# --- test calls ---------------------------------------------------------------------------


async def _call_form_page(
    request: Request,
    session: Session,
    signed: SignedIn,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    options = [
        {"id": option["id"], "text": _option_text(option)}
        for option in map(call_option, await voicebot.call_options(session))
    ]
    return page(
        request,
        signed,
        "test_call.html",
        title="Test call",
        options=options,
        chosen=(form or {}).get("did_id"),
        errors=errors or {},
        form=form or {},
        status_code=status_code,
    )


def _option_text(option: dict[str, Any]) -> str:
    """``+918047491803 — Echo line (echo)``: the number, then its label and bot if any."""
    text = option["number"]
    if option["label"]:
        text += f" — {option['label']}"
    if option["bot_id"]:
        text += f" ({option['bot_id']})"
    return str(text)


@router.get("/test-call")
async def call_form(request: Request, session: Session, signed: AdminConsole) -> Response:
    """Pick a DID and a number; twin: ``GET /api/v1/integrations/exotel/test-call-options``."""
    return await _call_form_page(request, session, signed)


@router.post("/test-call")
async def place_test_call(
    request: Request, state: State, session: Session, signed: AdminConsole
) -> Response:
    """Place a test call; twin: ``POST /api/v1/integrations/exotel/dids/{did_id}/test-call``."""
    form = await form_of(request)
    did_id = form.get("did_id", "")
    status_code = 400
    try:
        if not did_id:
            raise BadRequest("Pick a DID", field="did_id")
        body = PlaceTestCall.model_validate(
            {"to_number": form.get("to_number", ""), "mode": form.get("mode") or "flow"}
        )
        placed = await voicebot.place_test_call(
            state.reader,
            state.sessions,
            state.vault,
            state.settings,
            state.capabilities,
            state.exotel,
            did_id,
            body.to_number,
            body.mode,
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        errors = error_fields(exc)
        status_code = exc.status
    else:
        return redirect(f"{CONSOLE}/test-call/{placed['call_sid']}")
    kept = {name: form.get(name, "") for name in ("did_id", "to_number", "mode")}
    return await _call_form_page(
        request, session, signed, errors=errors, form=kept, status_code=status_code
    )


@router.get("/test-call/{call_sid}")
async def call_page(
    request: Request, session: Session, signed: AdminConsole, call_sid: CallSid
) -> Response:
    """A test call and its timeline, updated live; twin: ``GET /api/v1/calls/{call_sid}``."""
    call, timeline = await calls.platform_call_timeline(session, call_sid)
    placed = next((entry for entry in timeline if entry.kind == "test_call_placed"), None)
    return page(
        request,
        signed,
        "call.html",
        title="Test call",
        call=call,
        provider_status=placed.detail.get("status") if placed else None,
        timeline=timeline_view(timeline),
        ended=service.call_ended(call, timeline),
    )


@router.get("/test-call/{call_sid}/events")
async def call_events(
    state: State, _signed: AdminConsole, call_sid: CallSid, last_event_id: LastEventId = None
) -> Response:
    """The call's timeline entries as Server-Sent Events, then ``end``; twin: ``GET
    /api/v1/calls/{call_sid}/events``."""
    entries = await calls.follow_call(state.sessions, None, call_sid, last_event_id=last_event_id)
    return live_page_response(entries)


# --- settings -----------------------------------------------------------------------------


async def _settings_page(
    request: Request,
    state: AppState,
    session: Session,
    signed: SignedIn,
    *,
    errors: dict[str, str] | None = None,
    fleet_text: str | None = None,
    status_code: int = 200,
) -> Response:
    fleet = await voicebot.core_fleet(session, state.settings)
    return page(
        request,
        signed,
        "settings.html",
        title="Settings",
        fleet_text=fleet_text if fleet_text is not None else "\n".join(fleet),
        websocket_base=voicebot.fleet_wss_base(fleet),
        errors=errors or {},
        status_code=status_code,
    )


@router.get("/settings")
async def settings(
    request: Request, state: State, session: Session, signed: AdminConsole
) -> Response:
    """The core fleet; twin: ``GET /api/v1/settings``. An admin sees it read-only."""
    return await _settings_page(request, state, session, signed)


@router.post("/settings")
async def save_settings(
    request: Request, state: State, session: Session, signed: SuperAdminConsole
) -> Response:
    """Replace the core fleet, one URL a line; twin: ``PUT /api/v1/settings``."""
    form = await form_of(request)
    text = form.get("core_fleet", "")
    urls = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        body = FleetSettings.model_validate({"core_fleet": urls})
        await voicebot.set_core_fleet(session, state.settings, signed.operator, body.core_fleet)
    except ValidationError as exc:
        errors = {"core_fleet": describe_validation_errors(exc.errors())[0]}
    except ExoplaneError as exc:
        errors = {"core_fleet": exc.message}
    else:
        return redirect(f"{CONSOLE}/settings?done=settings_saved")
    return await _settings_page(
        request, state, session, signed, errors=errors, fleet_text=text, status_code=400
    )


# --- audit log ----------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    request: Request,
    session: Session,
    signed: SuperAdminConsole,
    operator: Annotated[str | None, Query(max_length=320)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
) -> Response:
    """Who changed what, filtered by operator and action; twin: ``GET /api/v1/audit``."""
    entries, next_cursor = await voicebot.audit_log(
        session, cursor=cursor, limit=AUDIT_PAGE_SIZE, operator=operator, action=action
    )
    return page(
        request,
        signed,
        "audit.html",
        title="Audit log",
        entries=[audit_view(entry) for entry in entries],
        next_cursor=next_cursor,
        filters={"operator": operator or "", "action": action or ""},
    )


# --- operators ----------------------------------------------------------------------------


async def _operators_page(
    request: Request,
    session: Session,
    signed: SignedIn,
    *,
    created: NewOperator | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    operators, _ = await admin.list_operators(session, cursor=None, limit=200)
    return page(
        request,
        signed,
        "operators.html",
        title="Operators",
        operators=operators,
        created=created,
        errors=errors or {},
        form=form or {},
        status_code=status_code,
    )


@router.get("/operators")
async def operators(request: Request, session: Session, signed: SuperAdminConsole) -> Response:
    """Operators and their roles; twin: ``GET /api/v1/operators``."""
    return await _operators_page(request, session, signed)


@router.post("/operators")
async def create_operator(
    request: Request, session: Session, signed: SuperAdminConsole
) -> Response:
    """Create an operator; its password and API key are on this page only. Twin: ``POST
    /api/v1/operators``."""
    form = await form_of(request)
    try:
        body = OperatorCreate.model_validate(
            {"email": form.get("email", ""), "role": form.get("role", "")}
        )
        created = await admin.create_operator(session, signed.operator, body.email, body.role)
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        errors = error_fields(exc) if exc.field else {"email": exc.message}
    else:
        return await _operators_page(request, session, signed, created=created, status_code=201)
    kept = {name: form.get(name, "") for name in ("email", "role")}
    return await _operators_page(
        request, session, signed, errors=errors, form=kept, status_code=400
    )


@router.post("/operators/{operator_id}")
async def update_operator(
    request: Request, session: Session, signed: SuperAdminConsole, operator_id: PathId
) -> Response:
    """Change an operator's role, disable or enable them; twin: ``PATCH
    /api/v1/operators/{operator_id}``."""
    form = await form_of(request)
    values: dict[str, Any] = {}
    if form.get("role"):
        values["role"] = form["role"]
    if form.get("disabled") in ("true", "false"):
        values["disabled"] = form["disabled"] == "true"
    try:
        body = OperatorUpdate.model_validate(values)
        await admin.update_operator(session, signed.operator, operator_id, body)
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        errors = {"operators": exc.message}
    else:
        return redirect(f"{CONSOLE}/operators?done=operator_saved")
    return await _operators_page(request, session, signed, errors=errors, status_code=409)
