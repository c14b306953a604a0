"""GitHub's web UI: the pages a logged-in browser reads a running job's live log from.

GitHub documents no API for the output of a running job (GITHUB.md). Its web UI shows it to a
signed-in user; Depot's fork-PR issuer reads it with an operator's session cookie. These
routes model that, as far as it is publicly described, for the issuer's optional live-log
channel. They are a model, not a capture: GitHub's REST schemas do not cover them, and the
real pages can change without notice.

    GET /{owner}/{repo}/actions/runs/{run_id}/jobs/{job_id}/steps
        JSON list of the job's steps: name, number, status, conclusion, started_at, ...
    GET /{owner}/{repo}/actions/runs/{run_id}/jobs/{job_id}/steps/{number}/backscroll
        JSON {"lines": [{"id", "line"}]}: what the step wrote so far, one entry per log
        entry, each line starting with its timestamp as in the downloaded log.

Both need the `user_session` cookie of a session the simulator knows (`add_web_session`);
without one GitHub redirects to its login page. A session sees public repositories only.
These requests count against no API rate limit.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from issuer.sim.logs import api_timestamp, log_timestamp
from issuer.sim.model import SimJob
from issuer.sim.simulator import GitHubSim

SESSION_COOKIE = "user_session"
_JOB = "/{owner}/{repo}/actions/runs/{run_id:int}/jobs/{job_id:int}"


def _not_found() -> Response:
    return Response("Not Found", 404, media_type="text/plain; charset=utf-8")


def _signed_in(sim: GitHubSim, request: Request) -> bool:
    session = request.cookies.get(SESSION_COOKIE)
    return session is not None and sim.has_web_session(session)


def _job(sim: GitHubSim, request: Request) -> SimJob | None:
    params = request.path_params
    repo = sim.repository(f"{params['owner']}/{params['repo']}")
    job = sim.job(params["job_id"])
    if repo is None or repo.private or job is None:
        return None
    if job.run.repository is not repo or job.run.id != params["run_id"]:
        return None
    return job


def web_routes(sim: GitHubSim) -> list[BaseRoute]:
    def guarded(request: Request) -> Response | SimJob:
        if not _signed_in(sim, request):
            target = quote(request.url.path, safe="")
            return RedirectResponse(f"/login?return_to={target}", 302)
        with sim.lock:
            job = _job(sim, request)
        return job if job is not None else _not_found()

    async def steps(request: Request) -> Response:
        found = guarded(request)
        if isinstance(found, Response):
            return found
        with sim.lock:
            body = [
                {
                    "name": step.name,
                    "number": step.number,
                    "status": step.status,
                    "conclusion": step.conclusion,
                    "started_at": api_timestamp(step.started_at),
                    "completed_at": (
                        api_timestamp(step.completed_at) if step.completed_at else None
                    ),
                }
                for step in found.steps
            ]
        return JSONResponse(body)

    async def backscroll(request: Request) -> Response:
        found = guarded(request)
        if isinstance(found, Response):
            return found
        number = request.path_params["number"]
        with sim.lock:
            if not any(step.number == number for step in found.steps):
                return _not_found()
            lines = [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{found.id}:{index}")),
                    "line": f"{log_timestamp(entry.timestamp)} {entry.text}",
                }
                for index, entry in enumerate(found.log)
                if entry.step == number
            ]
        return JSONResponse({"lines": lines})

    return [
        Route(f"{_JOB}/steps", steps, methods=["GET"]),
        Route(f"{_JOB}/steps/{{number:int}}/backscroll", backscroll, methods=["GET"]),
    ]
