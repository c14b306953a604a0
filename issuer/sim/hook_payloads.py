"""The JSON of GitHub's `workflow_job` and `workflow_run` webhook deliveries.

The job and the run are the REST API's own payloads (`payloads.job`, `payloads.workflow_run`),
so a delivery shows what a read through the API would show at that moment; around them, what
every delivery from a GitHub App installation carries: `repository`, `sender`, `installation`
(and `organization` for an organization's repository).
"""

from __future__ import annotations

from issuer.sim import payloads
from issuer.sim.model import SimJob, SimRepo, SimRun
from issuer.sim.payloads import Json, Urls, node_id


def installation(installation_id: int) -> Json:
    """SimpleInstallation."""
    return {"id": installation_id, "node_id": node_id("MDIzOkludGVncmF0aW9u", installation_id)}


def _organization(repo: SimRepo, urls: Urls) -> Json:
    """OrganizationSimpleWebhooks."""
    owner = repo.owner
    api = f"{urls.api}/orgs/{owner.login}"
    return {
        "login": owner.login,
        "id": owner.id,
        "node_id": node_id("O_kgDO", owner.id),
        "url": api,
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events",
        "hooks_url": f"{api}/hooks",
        "issues_url": f"{api}/issues",
        "members_url": f"{api}/members{{/member}}",
        "public_members_url": f"{api}/public_members{{/member}}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{owner.id}?v=4",
        "description": None,
    }


def _envelope(action: str, repo: SimRepo, sender: Json, installation_id: int, urls: Urls) -> Json:
    body: Json = {
        "action": action,
        "repository": payloads.repository(repo, urls),
        "sender": sender,
        "installation": installation(installation_id),
    }
    if repo.owner.type == "Organization":
        body["organization"] = _organization(repo, urls)
    return body


def workflow_job(action: str, job: SimJob, installation_id: int, urls: Urls) -> Json:
    """A `workflow_job` delivery: the job as `GET .../actions/jobs/{id}` shows it now."""
    run = job.run
    attempt = run.attempt(job.run_attempt) or run.latest
    sender = payloads.user(attempt.triggering_actor, urls)
    body = _envelope(action, run.repository, sender, installation_id, urls)
    body["workflow_job"] = payloads.job(job, urls)
    return body


def _workflow(run: SimRun, urls: Urls) -> Json:
    """WebhooksWorkflow: the workflow the run belongs to."""
    repo = run.repository.full_name
    created = payloads.timestamp(run.repository.created_at)
    return {
        "id": run.workflow_id,
        "node_id": node_id("W_kwDO", run.workflow_id),
        "name": run.workflow_name,
        "path": run.path,
        "state": "active",
        "created_at": created,
        "updated_at": created,
        "url": f"{urls.api}/repos/{repo}/actions/workflows/{run.workflow_id}",
        "html_url": f"{urls.web}/{repo}/blob/{run.repository.default_branch}/{run.path}",
        "badge_url": f"{urls.web}/{repo}/workflows/{run.workflow_name}/badge.svg",
    }


def workflow_run(action: str, run: SimRun, installation_id: int, urls: Urls) -> Json:
    """A `workflow_run` delivery: the run's latest attempt as the REST API shows it now."""
    attempt = run.latest
    sender = payloads.user(attempt.triggering_actor, urls)
    body = _envelope(action, run.repository, sender, installation_id, urls)
    body["workflow"] = _workflow(run, urls)
    body["workflow_run"] = payloads.workflow_run(run, attempt, urls)
    return body
