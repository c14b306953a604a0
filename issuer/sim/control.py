"""The control API under `/_sim/`: the Python API over HTTP, so `issuer github-sim` can be
driven from outside (a shell, another process). Not part of what GitHub serves."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from issuer.sim import payloads
from issuer.sim.gate import urls_for
from issuer.sim.model import SimJob, SimRun
from issuer.sim.simulator import GitHubSim

T = TypeVar("T")
Body = dict[str, Any]
JobAction = Callable[[SimJob], None]  # a checked action of a job's route, ready to apply

MAX_SCRIPT_ACTIONS = 50


class _Refusal(Exception):
    """A control request that cannot be done: bad input (400) or an unknown id (404)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _field(
    body: Body, name: str, kind: type[T], default: T | None = None, *, required: bool = False
) -> T | None:
    if name not in body or body[name] is None:
        if required:
            raise _Refusal(400, f"{name} is required")
        return default
    value = body[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _Refusal(400, f"{name} must be a {kind.__name__}")
    return value


def _required(body: Body, name: str, kind: type[T]) -> T:
    value = _field(body, name, kind, required=True)
    assert value is not None
    return value


async def _body(request: Request) -> Body:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _Refusal(400, "body must be JSON") from exc
    if not isinstance(body, dict):
        raise _Refusal(400, "body must be a JSON object")
    return body


def _handler(
    sim: GitHubSim, work: Callable[[Request, Body], Response]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request)
            with sim.lock:
                return work(request, body)
        except _Refusal as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 409)

    return endpoint


def control_routes(sim: GitHubSim) -> list[BaseRoute]:
    def run_of(request: Request) -> SimRun:
        run = sim.run(request.path_params["run_id"])
        if run is None:
            raise _Refusal(404, "no such run")
        return run

    def job_of(request: Request) -> SimJob:
        job = sim.job(request.path_params["job_id"])
        if job is None:
            raise _Refusal(404, "no such job")
        return job

    def run_json(request: Request, run: SimRun, status: int = 200) -> Response:
        return JSONResponse(payloads.workflow_run(run, run.latest, urls_for(sim, request)), status)

    def job_json(request: Request, job: SimJob, status: int = 200) -> Response:
        return JSONResponse(payloads.job(job, urls_for(sim, request)), status)

    def repo_named(name: str) -> Any:
        repo = sim.repository(name)
        if repo is None:
            raise _Refusal(404, f"no repository {name}")
        return repo

    def add_repo(request: Request, body: Body) -> Response:
        fork_of = _field(body, "fork_of", str)
        owner_type = _field(body, "owner_type", str, "User")
        if owner_type not in ("User", "Organization"):
            raise _Refusal(400, "owner_type must be User or Organization")
        repo = sim.add_repository(
            _required(body, "full_name", str),
            private=bool(_field(body, "private", bool, False)),
            fork_of=repo_named(fork_of) if fork_of else None,
            owner_type="User" if owner_type == "User" else "Organization",
        )
        return JSONResponse(payloads.simulator_repo(repo), 201)

    def create_run(request: Request, body: Body) -> Response:
        head = _field(body, "head_repository", str)
        options = {
            name: value
            for name in (
                "event",
                "actor",
                "workflow_name",
                "path",
                "head_branch",
                "head_sha",
                "display_title",
                "base_branch",
            )
            if (value := _field(body, name, str)) is not None
        }
        run = sim.create_run(
            repo_named(_required(body, "repository", str)),
            head_repository=repo_named(head) if head else None,
            **options,
        )
        return run_json(request, run, 201)

    def add_job(request: Request, body: Body) -> Response:
        """A queued job; with `actions` (as a script takes them, all checked first), those are
        applied to it at once, in the same request."""
        labels = _field(body, "labels", list)
        if labels is not None and not all(isinstance(x, str) for x in labels):
            raise _Refusal(400, "labels must be strings")
        actions = _field(body, "actions", list)
        planned = [] if actions is None else plan(actions)
        job = sim.add_job(
            run_of(request),
            _required(body, "name", str),
            labels=labels,
            runner_group_name=_field(body, "runner_group_name", str, "GitHub Actions")
            or "GitHub Actions",
        )
        for apply in planned:
            apply(job)
        return job_json(request, job, 201)

    # What a job's routes do, as parsers: each checks an action's body (refusing bad input with
    # 400) and answers the sim call to make, so a script can check all before applying any.
    def start_action(body: Body) -> JobAction:
        return sim.start_job

    def step_action(body: Body) -> JobAction:
        name = _required(body, "name", str)
        script = _field(body, "script", str)
        env = _field(body, "env", dict)
        if env is not None and not all(isinstance(v, str) for v in env.values()):
            raise _Refusal(400, "env values must be strings")
        action = _field(body, "action", str)
        inputs = _field(body, "inputs", dict)
        if inputs is not None and not all(isinstance(v, str) for v in inputs.values()):
            raise _Refusal(400, "inputs values must be strings")
        if action is not None and script is not None:
            raise _Refusal(400, "a step has a script or an action, not both")
        return lambda job: sim.start_step(
            job, name, script=script, env=env, action=action, inputs=inputs
        )

    def elapse_action(body: Body) -> JobAction:
        seconds = _required(body, "seconds", float)
        if not 0 <= seconds <= 3600:
            raise _Refusal(400, "seconds must be from 0 to 3600")
        return lambda job: sim.elapse(job, seconds)

    def print_action(body: Body) -> JobAction:
        text = _required(body, "text", str)
        color = _field(body, "color", str)
        return lambda job: sim.print_line(job, text, color=color)

    def finish_step_action(body: Body) -> JobAction:
        conclusion = _field(body, "conclusion", str, "success") or "success"
        return lambda job: sim.finish_step(job, conclusion)

    def finish_action(body: Body) -> JobAction:
        conclusion = _field(body, "conclusion", str, "success") or "success"
        return lambda job: sim.finish_job(job, conclusion)

    job_actions: dict[str, Callable[[Body], JobAction]] = {
        "start": start_action,
        "step": step_action,
        "print": print_action,
        "elapse": elapse_action,
        "finish-step": finish_step_action,
        "finish": finish_action,
    }

    def job_route(parse: Callable[[Body], JobAction]) -> Callable[[Request, Body], Response]:
        def work(request: Request, body: Body) -> Response:
            job = job_of(request)
            parse(body)(job)
            return job_json(request, job)

        return work

    def script(request: Request, body: Body) -> Response:
        """Several of the job's routes in one request: `{"actions": [{"do": "start"},
        {"do": "step", "name": ..., "script": ..., "env": ...} (or "action" and "inputs"),
        {"do": "print", "text": ..., "color": ...}, {"do": "elapse", "seconds": ...} (the
        runner's clock moves on), {"do": "finish-step", "conclusion": ...},
        {"do": "finish", ...}]}`, each action taking the fields its single route takes, at
        most `MAX_SCRIPT_ACTIONS` of them.

        Every action is checked before any is applied: a bad one is 400 naming its index, and
        nothing changes. Then they are applied in order under the one acquisition of `sim.lock`
        the request holds, so no other request sees the job between them. A state error from
        the simulator (say, printing with no step in progress) is 409 like the single routes',
        but the actions before it stay applied. Answers the job as the single routes do."""
        job = job_of(request)
        planned = plan(_required(body, "actions", list))
        for apply in planned:
            apply(job)
        return job_json(request, job)

    def plan(actions: list[Any]) -> list[JobAction]:
        """Every action checked, none applied: a bad one is 400 naming its index."""
        if not actions:
            raise _Refusal(400, "actions must not be empty")
        if len(actions) > MAX_SCRIPT_ACTIONS:
            raise _Refusal(400, f"actions must be at most {MAX_SCRIPT_ACTIONS}")
        planned: list[JobAction] = []
        for index, action in enumerate(actions):
            try:
                if not isinstance(action, dict):
                    raise _Refusal(400, "must be a JSON object")
                do = _required(action, "do", str)
                parse = job_actions.get(do)
                if parse is None:
                    raise _Refusal(400, f"do must be one of {', '.join(job_actions)}")
                planned.append(parse(action))
            except _Refusal as exc:
                raise _Refusal(400, f"actions[{index}]: {exc.message}") from exc
        return planned

    def job_log(request: Request, body: Body) -> Response:
        return PlainTextResponse(sim.job_log(job_of(request)))

    def finish_run(request: Request, body: Body) -> Response:
        run = run_of(request)
        sim.finish_run(run, _field(body, "conclusion", str, "success") or "success")
        return run_json(request, run)

    def rerun(request: Request, body: Body) -> Response:
        run = run_of(request)
        sim.rerun(run, actor=_field(body, "actor", str))
        return run_json(request, run)

    def add_token(request: Request, body: Body) -> Response:
        sim.add_token(
            _required(body, "token", str),
            limit=_field(body, "limit", int, 5000) or 0,
            sees_private=bool(_field(body, "sees_private", bool, False)),
        )
        return JSONResponse({}, 201)

    def add_app(request: Request, body: Body) -> Response:
        sim.add_app(
            _required(body, "app_id", int),
            _required(body, "public_key_pem", str),
            _required(body, "installation_id", int),
            limit=_field(body, "limit", int, 5000) or 0,
            sees_private=bool(_field(body, "sees_private", bool, False)),
        )
        return JSONResponse({}, 201)

    def add_web_session(request: Request, body: Body) -> Response:
        sim.add_web_session(_required(body, "cookie", str))
        return JSONResponse({}, 201)

    def settings(request: Request, body: Body) -> Response:
        if request.method == "PUT":
            try:
                sim.settings.update(body)
            except ValueError as exc:
                raise _Refusal(400, str(exc)) from exc
        return JSONResponse(sim.settings.as_dict())

    def fail_next(request: Request, body: Body) -> Response:
        retry_after = body["retry_after"] if "retry_after" in body else "1"
        if retry_after is not None and not isinstance(retry_after, str):
            raise _Refusal(400, "retry_after must be a string or null")
        sim.fail_next(
            _required(body, "count", int),
            status=_field(body, "status", int),
            secondary=bool(_field(body, "secondary", bool, False)),
            retry_after=retry_after,
        )
        return JSONResponse({}, 201)

    def requests(request: Request, body: Body) -> Response:
        entries = [
            {"method": m, "path": p, "status": s, "authorization": a}
            for m, p, s, a in sim.request_log
        ]
        return JSONResponse(entries)

    def counted(request: Request, body: Body) -> Response:
        token = request.query_params.get("token")
        return JSONResponse({"counted": sim.counted_requests(token)})

    def secondary(request: Request, body: Body) -> Response:
        """The secondary limit's record: with `?token=T` (or `?anonymous`) one caller's
        `{"points", "peak_points_per_minute", "refusals"}`; without, the refusals the limit
        gave, those injected with fail-next, and every bucket's record."""
        params = request.query_params
        if "token" in params or "anonymous" in params:
            return JSONResponse(sim.secondary_usage(params.get("token")).as_dict())
        return JSONResponse(
            {
                "refusals": sim.secondary_refusals(),
                "injected": sim.injected_secondary_refusals(),
                "buckets": {name: u.as_dict() for name, u in sim.secondary_report().items()},
            }
        )

    def webhook(request: Request, body: Body) -> Response:
        """PUT `{"url", "secret"}`: deliveries go there from now on; DELETE: no more
        deliveries. Every method answers the target without its secret."""
        if request.method == "PUT":
            try:
                sim.deliver_to(_required(body, "url", str), _required(body, "secret", str))
            except ValueError as exc:
                raise _Refusal(400, str(exc)) from exc
        elif request.method == "DELETE":
            sim.deliver_to(None)
        target = sim.webhooks.target
        if target is None:
            return JSONResponse({"url": None, "hook_id": None})
        return JSONResponse({"url": target.url, "hook_id": target.hook_id})

    def deliveries(request: Request, body: Body) -> Response:
        return JSONResponse([attempt.as_dict() for attempt in sim.deliveries()])

    def redeliver(request: Request, body: Body) -> Response:
        try:
            sim.redeliver(request.path_params["delivery_id"])
        except KeyError as exc:
            raise _Refusal(404, "no such delivery") from exc
        return JSONResponse({}, 202)

    def drop_next(request: Request, body: Body) -> Response:
        count = _required(body, "count", int)
        if count < 0:
            raise _Refusal(400, "count must not be negative")
        sim.drop_deliveries(count)
        return JSONResponse({})

    def reset_limit(request: Request, body: Body) -> Response:
        sim.reset_rate_limit(_field(body, "token", str))
        return JSONResponse({})

    table: list[tuple[str, Callable[[Request, Body], Response], list[str]]] = [
        ("/repos", add_repo, ["POST"]),
        ("/runs", create_run, ["POST"]),
        ("/runs/{run_id:int}/jobs", add_job, ["POST"]),
        ("/runs/{run_id:int}/finish", finish_run, ["POST"]),
        ("/runs/{run_id:int}/rerun", rerun, ["POST"]),
        ("/jobs/{job_id:int}/start", job_route(start_action), ["POST"]),
        ("/jobs/{job_id:int}/steps", job_route(step_action), ["POST"]),
        ("/jobs/{job_id:int}/print", job_route(print_action), ["POST"]),
        ("/jobs/{job_id:int}/elapse", job_route(elapse_action), ["POST"]),
        ("/jobs/{job_id:int}/finish-step", job_route(finish_step_action), ["POST"]),
        ("/jobs/{job_id:int}/finish", job_route(finish_action), ["POST"]),
        ("/jobs/{job_id:int}/script", script, ["POST"]),
        ("/jobs/{job_id:int}/log", job_log, ["GET"]),
        ("/tokens", add_token, ["POST"]),
        ("/apps", add_app, ["POST"]),
        ("/web-sessions", add_web_session, ["POST"]),
        ("/settings", settings, ["GET", "PUT"]),
        ("/fail-next", fail_next, ["POST"]),
        ("/requests", requests, ["GET"]),
        ("/rate-limit", counted, ["GET"]),
        ("/rate-limit/reset", reset_limit, ["POST"]),
        ("/secondary-limit", secondary, ["GET"]),
        ("/webhook", webhook, ["GET", "PUT", "DELETE"]),
        ("/deliveries", deliveries, ["GET"]),
        ("/deliveries/drop-next", drop_next, ["POST"]),
        ("/deliveries/{delivery_id}/redeliver", redeliver, ["POST"]),
    ]
    return [
        Route("/_sim/deliveries/flush", _flush(sim), methods=["POST"]),
        *(
            Route(f"/_sim{path}", _handler(sim, work), methods=methods)
            for path, work, methods in table
        ),
    ]


def _flush(sim: GitHubSim) -> Callable[[Request], Awaitable[Response]]:
    """POST `{"timeout": S}` (default 30): held deliveries go out now; answers `{"idle": true}`
    once every delivery made so far was sent, `false` if the timeout came first. Waits
    without the simulator's lock or its event loop."""

    async def endpoint(request: Request) -> Response:
        try:
            timeout = _field(await _body(request), "timeout", float, 30.0) or 0.0
        except _Refusal as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        sim.webhooks.release()
        deadline = time.monotonic() + timeout
        while True:  # the sender is a thread: its queue is polled, not awaited
            if sim.deliveries_idle() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        return JSONResponse({"idle": sim.deliveries_idle()})

    return endpoint
