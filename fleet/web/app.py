"""The console's routes: server-rendered pages (Starlette + Jinja2), htmx fragments, two POSTs, /metrics.

GET never writes. The two POSTs (send an ad-hoc heartbeat, close a board task)
need the page's anti-forgery token and answer with a redirect (post/redirect/get).
Every error an operator can cause gets one short page with a 4xx status: an
unknown bet, agent, task or stage is 404, a malformed number 400, a closed task
409, a post without the token 403; an unreachable store or broker is 503.
Handlers are plain functions: Starlette runs them in its thread pool, so the
blocking store reads never stall the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.definitions.catalogue import Registry, get_registry
from fleet.errors import (
    BadArgument,
    CsrfRefused,
    FleetError,
    TaskClosed,
    TransientError,
    UnknownAgent,
    UnknownBet,
    UnknownStage,
    UnknownTask,
)
from fleet.settings import Settings, get_settings
from fleet.store import database, redis_client
from fleet.web import data
from fleet.web.graph import hours_chart, stage_graph
from fleet.web.metrics import registry_for
from fleet.web.security import CSRF_FIELD, CSRF_HEADER, BasicAuth, CsrfTokens

HERE = Path(__file__).parent
#: Longest bet id or task id looked up; anything longer cannot exist (ids are short).
MAX_ID_LENGTH = 200
#: Longest close reason accepted (it is stored in the task's history).
MAX_REASON_LENGTH = 2000
#: Largest request body read (a form holds a token and a reason): larger is refused with 413.
MAX_BODY_BYTES = 64 * 1024

STATUS_BY_ERROR: list[tuple[type[Exception], int]] = [
    (CsrfRefused, 403),
    (UnknownBet, 404),
    (UnknownAgent, 404),
    (UnknownTask, 404),
    (UnknownStage, 404),
    (TaskClosed, 409),
    (TransientError, 503),
    (BadArgument, 400),
]


class Console:
    """The app's state: where it reads from, its templates and its anti-forgery tokens."""

    def __init__(self, sources: data.Sources, csrf: CsrfTokens) -> None:
        self.src = sources
        self.csrf = csrf
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["age"] = age
        self.templates.env.filters["when"] = when
        self.metrics = registry_for(lambda: data.metrics_snapshot(self.src))

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        settings = self.src.settings
        common = {
            "user": settings.web_user,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.csrf.token(settings.web_user),
            "flower_url": settings.flower_url,
            "refresh_s": settings.web_refresh_s,
            "pipeline_name": self.src.registry.pipeline.name,
        }
        response = self.templates.TemplateResponse(request, name, {**common, **context}, status_code=status)
        return response

    async def check_csrf(self, request: Request) -> dict[str, str]:
        """The posted form, if it carries this server's token; else :class:`CsrfRefused`."""
        form = await request.form()
        given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not self.csrf.valid(self.src.settings.web_user, given if isinstance(given, str) else None):
            raise CsrfRefused(
                "the form has no valid anti-forgery token (the server restarted?): reload the page and retry"
            )
        return {key: value for key, value in form.items() if isinstance(value, str)}


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


# --- formatting ---------------------------------------------------------------------------------


def age(seconds: float | None) -> str:
    """A duration as its two largest units: ``45s``, ``3m 20s``, ``5h 12m``, ``2d 4h``."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit} {s % size // sub_size}{sub}"
    return f"{s}s"


def when(at: object) -> str:
    if not isinstance(at, datetime):
        return "-"
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# --- input checks -------------------------------------------------------------------------------


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 6 or not low <= int(raw) <= high:
        raise BadArgument(f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


def short_id(value: str, missing: Callable[[str], FleetError]) -> str:
    """``value`` if it could be an id; an over-long one is unknown without a lookup."""
    if not value or len(value) > MAX_ID_LENGTH:
        raise missing(value[:MAX_ID_LENGTH] + ("..." if len(value) > MAX_ID_LENGTH else ""))
    return value


def now() -> datetime:
    return datetime.now(UTC)


# --- pages ---------------------------------------------------------------------------------------


def home(request: Request) -> Response:
    return RedirectResponse("/pipeline", status_code=303)


def pipeline_page(request: Request) -> Response:
    c = console_of(request)
    template = "pipeline_live.html" if request.url.path.endswith("/live") else "pipeline.html"
    view = data.pipeline_view(c.src, now())
    counts = {row.name: row.count for row in view.stages}
    breaches = {row.name: row.past_sla for row in view.stages}
    graph = stage_graph(c.src.registry.pipeline, counts, breaches)
    return c.page(request, template, view=view, graph=graph, active="pipeline")


def bets_page(request: Request) -> Response:
    c = console_of(request)
    stage = request.query_params.get("stage") or None
    if stage is not None and stage not in c.src.registry.pipeline.stage_map:
        raise UnknownStage(stage[:MAX_ID_LENGTH], c.src.registry.pipeline.stage_map)
    limit = int_param(request, "limit", 100, 1, data.MAX_ROWS)
    rows, total = data.bets_view(c.src, stage, limit)
    return c.page(request, "bets.html", rows=rows, total=total, stage=stage, active="pipeline")


def bet_page(request: Request) -> Response:
    c = console_of(request)
    bet_id = short_id(request.path_params["bet_id"], UnknownBet)
    view = data.bet_view(c.src, bet_id)
    return c.page(request, "bet.html", view=view, t=view.timeline, active="pipeline")


def agents_page(request: Request) -> Response:
    c = console_of(request)
    template = "agents_live.html" if request.url.path.endswith("/live") else "agents.html"
    views, audit_error = data.agents_view(c.src, now())
    sent = {k: request.query_params.get(k, "") for k in ("sent", "agent", "queue")}
    return c.page(request, template, agents=views, audit_error=audit_error, sent=sent, active="agents")


async def trigger_post(request: Request) -> Response:
    c = console_of(request)
    await c.check_csrf(request)
    agent = short_id(request.path_params["agent"], UnknownAgent)
    task_id, queue = await run_in_threadpool(data.trigger, c.src, agent)
    query = urlencode({"sent": task_id, "agent": agent, "queue": queue})
    return RedirectResponse(f"/agents?{query}", status_code=303)


def board_page(request: Request) -> Response:
    c = console_of(request)
    tasks = data.open_tasks(c.src)
    return c.page(
        request,
        "board.html",
        tasks=tasks,
        now=now(),
        closed=request.query_params.get("closed"),
        active="board",
    )


async def close_post(request: Request) -> Response:
    c = console_of(request)
    form = await c.check_csrf(request)
    task_id = short_id(request.path_params["task_id"], UnknownTask)
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise BadArgument(f"a close needs a reason of 1 to {MAX_REASON_LENGTH} characters")
    task = await run_in_threadpool(data.close_task, c.src, task_id, reason)
    return RedirectResponse(f"/board?{urlencode({'closed': task.task_id})}", status_code=303)


#: What the schedule chart's bars are; its legend says the same words.
SCHEDULE_CHART_LABEL = "peak heartbeats running at once in each hour of the fleet's day"


def schedule_page(request: Request) -> Response:
    c = console_of(request)
    view = data.schedule_view(c.src, now())
    chart = hours_chart(
        [h.peak_running for h in view.computed.hours],
        [h.peak_running for h in view.observed],
        SCHEDULE_CHART_LABEL,
    )
    return c.page(
        request, "schedule.html", view=view, chart=chart, chart_label=SCHEDULE_CHART_LABEL, active="schedule"
    )


def metrics_endpoint(request: Request) -> Response:
    c = console_of(request)
    return Response(generate_latest(c.metrics), media_type=CONTENT_TYPE_LATEST)


# --- errors ------------------------------------------------------------------------------------------


def status_for(exc: Exception) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


async def fleet_error(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    return console_of(request).page(request, "error.html", status=status, message=str(exc), code=status)


async def store_error(request: Request, exc: Exception) -> Response:
    message = f"the store or the broker did not answer: {type(exc).__name__}"
    return console_of(request).page(request, "error.html", status=503, message=message, code=503)


async def http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    messages = {404: "no such page", 405: "method not allowed", 413: "request too large"}
    message = messages.get(code, str(getattr(exc, "detail", "error")))
    return console_of(request).page(request, "error.html", status=code, message=message, code=code)


class SecurityHeaders:
    """Pages may not be framed (clickjacking) nor cached, and load scripts only from here."""

    HEADERS = [
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"same-origin"),
        (
            b"content-security-policy",
            b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
            b" frame-ancestors 'none'",
        ),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


# --- the app -------------------------------------------------------------------------------------------


def create_app(
    settings: Settings | None = None, registry: Registry | None = None, csrf: CsrfTokens | None = None
) -> Starlette:
    """The console as an ASGI app (nothing is connected until the first request)."""
    settings = settings or get_settings()
    registry = registry or get_registry()
    sources = data.Sources(settings, registry, database(settings), redis_client(settings.broker_url))
    routes = [
        Route("/", home),
        Route("/pipeline", pipeline_page),
        Route("/pipeline/live", pipeline_page),
        Route("/bets", bets_page),
        Route("/bets/{bet_id:path}", bet_page),
        Route("/agents", agents_page),
        Route("/agents/live", agents_page),
        Route("/agents/{agent}/trigger", trigger_post, methods=["POST"]),
        Route("/board", board_page),
        Route("/board/{task_id}/close", close_post, methods=["POST"]),
        Route("/schedule", schedule_page),
        Route("/metrics", metrics_endpoint),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        FleetError: fleet_error,
        PyMongoError: store_error,
        redis.RedisError: store_error,
        HTTPException: http_error,
    }
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BasicAuth, user=settings.web_user, password=settings.web_password),
        ],
        exception_handlers=handlers,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.console = Console(sources, csrf or CsrfTokens())
    return app
