"""The REST endpoints the issuer reads: runs, jobs, job logs, annotations, pulls, app tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

from issuer.sim import payloads
from issuer.sim.blobs import blob_url
from issuer.sim.credentials import INSTALLATION_TOKEN_SECONDS
from issuer.sim.gate import (
    ALL_METHODS,
    ApiContext,
    ApiError,
    ApiReply,
    Handler,
    NotFound,
    api_endpoint,
)
from issuer.sim.logs import api_timestamp
from issuer.sim.model import SimAttempt, SimJob, SimRepo, SimRun
from issuer.sim.pagination import Page, link_header
from issuer.sim.simulator import GitHubSim

_RUN_DOCS = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run"
_ATTEMPT_DOCS = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run-attempt"
_JOBS_DOCS = "https://docs.github.com/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run"
_ATTEMPT_JOBS_DOCS = (
    "https://docs.github.com/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run-attempt"
)
_JOB_DOCS = "https://docs.github.com/rest/actions/workflow-jobs#get-a-job-for-a-workflow-run"
_LOGS_DOCS = (
    "https://docs.github.com/rest/actions/workflow-jobs#download-job-logs-for-a-workflow-run"
)
_ANNOTATIONS_DOCS = "https://docs.github.com/rest/checks/runs#list-check-run-annotations"
_PULLS_DOCS = "https://docs.github.com/rest/pulls/pulls#list-pull-requests"
_TOKEN_DOCS = (
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
)
_TOKEN_PERMISSIONS = {
    "actions": "read",
    "checks": "read",
    "metadata": "read",
    "pull_requests": "read",
}


# -- lookups: anything the caller may not see is simply not there ----------------------------


def _repo(ctx: ApiContext) -> SimRepo:
    params = ctx.request.path_params
    if "repo_id" in params:
        repo = ctx.sim.repository_by_id(params["repo_id"])
    else:
        repo = ctx.sim.repository(f"{params['owner']}/{params['repo']}")
    if repo is None or not ctx.sim.can_read(repo, ctx.caller.credential):
        raise NotFound
    return repo


def _run(ctx: ApiContext) -> SimRun:
    repo = _repo(ctx)
    run = ctx.sim.run(ctx.request.path_params["run_id"])
    if run is None or run.repository is not repo:
        raise NotFound
    return run


def _attempt(ctx: ApiContext, run: SimRun) -> SimAttempt:
    number = ctx.request.path_params.get("attempt")
    attempt = run.latest if number is None else run.attempt(number)
    if attempt is None:
        raise NotFound
    return attempt


def _job(ctx: ApiContext, key: str = "job_id") -> SimJob:
    repo = _repo(ctx)
    job = ctx.sim.job(ctx.request.path_params[key])
    if job is None or job.run.repository is not repo:
        raise NotFound
    return job


def _paged(
    ctx: ApiContext, items: Sequence[Any], link_path: str
) -> tuple[list[Any], dict[str, str]]:
    """One page of `items`, and a Link header whose URLs use GitHub's `/repositories/{id}` form."""
    params = ctx.request.query_params
    page = Page.of(params)
    link = link_header(f"{ctx.origin}{ctx.sim.api_prefix}{link_path}", params, page, len(items))
    return page.slice(items), ({"link": link} if link else {})


# -- handlers ------------------------------------------------------------------------------


def get_run(ctx: ApiContext) -> ApiReply:
    run = _run(ctx)
    return ApiReply(body=payloads.workflow_run(run, _attempt(ctx, run), ctx.urls))


def list_jobs(ctx: ApiContext) -> ApiReply:
    run = _run(ctx)
    attempt = _attempt(ctx, run)
    path = f"/repositories/{run.repository.id}/actions/runs/{run.id}"
    if "attempt" in ctx.request.path_params:
        jobs = attempt.jobs
        path += f"/attempts/{attempt.number}"
    else:
        which = ctx.request.query_params.get("filter", "latest")
        if which not in ("latest", "all"):
            raise ApiError(
                422, f'Invalid request.\n\n"{which}" is not one of ["latest", "all"].', _JOBS_DOCS
            )
        jobs = attempt.jobs
        if which == "all":
            jobs = [j for a in reversed(run.attempts) for j in a.jobs]
    page, headers = _paged(ctx, jobs, path + "/jobs")
    body = {"total_count": len(jobs), "jobs": [payloads.job(j, ctx.urls) for j in page]}
    return ApiReply(body=body, headers=headers)


def get_job(ctx: ApiContext) -> ApiReply:
    return ApiReply(body=payloads.job(_job(ctx), ctx.urls))


def job_logs(ctx: ApiContext) -> ApiReply:
    """302 to the blob host once the log is final; before that, per the settings, 404 here or
    a 302 to a blob that does not exist yet."""
    job = _job(ctx)
    if ctx.sim.log_state(job) == "api_404":
        raise NotFound
    base = ctx.sim.blob_base_url or ctx.origin
    return ApiReply(302, headers={"location": blob_url(ctx.sim, base, job.id)})


def list_annotations(ctx: ApiContext) -> ApiReply:
    job = _job(ctx, "check_run_id")
    visible = ctx.sim.visible_annotations(job)
    path = f"/repositories/{job.run.repository.id}/check-runs/{job.id}/annotations"
    page, headers = _paged(ctx, visible, path)
    return ApiReply(body=[payloads.annotation(a, job, ctx.urls) for a in page], headers=headers)


def list_pulls(ctx: ApiContext) -> ApiReply:
    repo = _repo(ctx)
    params = ctx.request.query_params
    state = params.get("state", "open")
    pulls = [p for p in ctx.sim.pull_requests(repo) if state == "all" or p.state == state]
    if head := params.get("head"):
        owner, _, branch = head.partition(":")
        pulls = [
            p
            for p in pulls
            if p.head_repository.owner.login.lower() == owner.lower()
            and (not branch or p.head_branch == branch)
        ]
    if base := params.get("base"):
        pulls = [p for p in pulls if p.base_branch == base]
    pulls.sort(key=lambda p: p.number, reverse=True)
    page, headers = _paged(ctx, pulls, f"/repositories/{repo.id}/pulls")
    return ApiReply(body=[payloads.pull_request_simple(p, ctx.urls) for p in page], headers=headers)


def rate_limit(ctx: ApiContext) -> ApiReply:
    """GET /rate_limit: free of charge, as on GitHub."""
    quota = ctx.sim.rate_limiter.quota(ctx.caller.bucket, ctx.caller.limit)
    core = {
        "limit": quota.limit,
        "used": quota.used,
        "remaining": quota.remaining,
        "reset": quota.reset,
    }
    other = {"limit": 30, "used": 0, "remaining": 30, "reset": quota.reset}
    body = {"resources": {"core": core, "search": other, "graphql": dict(core)}, "rate": core}
    return ApiReply(body=body, counts=False)


def create_installation_token(ctx: ApiContext) -> ApiReply:
    app = ctx.caller.app
    if app is None or app.installation_id != ctx.request.path_params["installation_id"]:
        raise NotFound
    now = ctx.sim.clock()
    credential = ctx.sim.credentials.issue_installation_token(
        app, now, ctx.sim.settings.installation_token_delay
    )
    body = {
        "token": credential.token,
        "expires_at": api_timestamp(now + INSTALLATION_TOKEN_SECONDS),
        "permissions": dict(_TOKEN_PERMISSIONS),
        "repository_selection": "all",
    }
    return ApiReply(201, body)


def not_found(ctx: ApiContext) -> ApiReply:
    raise NotFound


def api_routes(sim: GitHubSim) -> list[BaseRoute]:
    """Every API route under `sim.api_prefix`, in both `/repos/{owner}/{repo}` and
    `/repositories/{repo_id}` form (GitHub's Link headers use the latter)."""
    repo_routes: list[tuple[str, Handler, str]] = [
        ("/actions/runs/{run_id:int}", get_run, _RUN_DOCS),
        ("/actions/runs/{run_id:int}/attempts/{attempt:int}", get_run, _ATTEMPT_DOCS),
        ("/actions/runs/{run_id:int}/jobs", list_jobs, _JOBS_DOCS),
        ("/actions/runs/{run_id:int}/attempts/{attempt:int}/jobs", list_jobs, _ATTEMPT_JOBS_DOCS),
        ("/actions/jobs/{job_id:int}", get_job, _JOB_DOCS),
        ("/actions/jobs/{job_id:int}/logs", job_logs, _LOGS_DOCS),
        ("/check-runs/{check_run_id:int}/annotations", list_annotations, _ANNOTATIONS_DOCS),
        ("/pulls", list_pulls, _PULLS_DOCS),
    ]
    prefix = sim.api_prefix
    routes: list[BaseRoute] = []
    for suffix, handler, docs in repo_routes:
        endpoint = api_endpoint(sim, handler, docs=docs)
        routes.append(
            Route(f"{prefix}/repos/{{owner}}/{{repo}}{suffix}", endpoint, methods=ALL_METHODS)
        )
        routes.append(
            Route(f"{prefix}/repositories/{{repo_id:int}}{suffix}", endpoint, methods=ALL_METHODS)
        )
    routes.append(Route(f"{prefix}/rate_limit", api_endpoint(sim, rate_limit), methods=ALL_METHODS))
    token_endpoint = api_endpoint(
        sim, create_installation_token, method="POST", auth="app_jwt", docs=_TOKEN_DOCS
    )
    routes.append(
        Route(
            f"{prefix}/app/installations/{{installation_id:int}}/access_tokens",
            token_endpoint,
            methods=ALL_METHODS,
        )
    )
    return routes


def fallback_route(sim: GitHubSim) -> BaseRoute:
    """GitHub's 404 for any other path or method (charged like any request)."""
    endpoint = api_endpoint(sim, not_found, method="*")
    return Route(f"{sim.api_prefix}/{{path:path}}", endpoint, methods=ALL_METHODS)
