"""The JSON GitHub's REST API (version 2022-11-28) returns for the simulator's records."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from issuer.sim.logs import api_timestamp
from issuer.sim.model import SimAttempt, SimJob, SimPullRequest, SimRepo, SimRun, SimStep, SimUser
from issuer.sim.runner import Annotation

Json = dict[str, Any]


@dataclass(frozen=True)
class Urls:
    """Where links in a payload point: the API base (with any GHES prefix) and the web UI."""

    api: str
    web: str


def node_id(prefix: str, number: int) -> str:
    return prefix + base64.b64encode(number.to_bytes(8, "big")).decode().rstrip("=")


def timestamp(when: float | None) -> str | None:
    return None if when is None else api_timestamp(when)


def user(u: SimUser, urls: Urls) -> Json:
    """SimpleUser."""
    api = f"{urls.api}/users/{u.login}"
    return {
        "login": u.login,
        "id": u.id,
        "node_id": node_id("U_kgDO" if u.type == "User" else "O_kgDO", u.id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{u.id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{urls.web}/{u.login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": u.type,
        "user_view_type": "public",
        "site_admin": False,
    }


def minimal_repository(repo: SimRepo, urls: Urls) -> Json:
    """MinimalRepository, with the fields a workflow run's `repository` carries."""
    api = f"{urls.api}/repos/{repo.full_name}"
    payload: Json = {
        "id": repo.id,
        "node_id": node_id("R_kgDO", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
        "owner": user(repo.owner, urls),
        "html_url": f"{urls.web}/{repo.full_name}",
        "description": None,
        "fork": repo.fork,
        "url": api,
    }
    for key, suffix in (
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        ("notifications_url", "/notifications{?since,all,participating}"),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ):
        payload[key] = api + suffix
    return payload


def _pull_minimal(pull: SimPullRequest, urls: Urls) -> Json:
    """PullRequestMinimal, as listed in a run's `pull_requests`."""

    def side(repo: SimRepo, ref: str, sha: str) -> Json:
        return {
            "ref": ref,
            "sha": sha,
            "repo": {"id": repo.id, "url": f"{urls.api}/repos/{repo.full_name}", "name": repo.name},
        }

    return {
        "url": f"{urls.api}/repos/{pull.base_repository.full_name}/pulls/{pull.number}",
        "id": pull.id,
        "number": pull.number,
        "head": side(pull.head_repository, pull.head_branch, pull.head_sha),
        "base": side(pull.base_repository, pull.base_branch, pull.base_sha),
    }


def workflow_run(run: SimRun, attempt: SimAttempt, urls: Urls) -> Json:
    """WorkflowRun as of `attempt`. `pull_requests` is empty for runs from forks, as on GitHub."""
    repo = run.repository
    api = f"{urls.api}/repos/{repo.full_name}"
    run_api = f"{api}/actions/runs/{run.id}"
    pulls = []
    if run.pull_request is not None and not run.from_fork and run.pull_request.state == "open":
        pulls.append(_pull_minimal(run.pull_request, urls))
    return {
        "id": run.id,
        "name": run.workflow_name,
        "node_id": node_id("WFR_kwLO", run.id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.path,
        "display_title": run.display_title,
        "run_number": run.run_number,
        "event": run.event,
        "status": attempt.status,
        "conclusion": attempt.conclusion,
        "workflow_id": run.workflow_id,
        "check_suite_id": run.check_suite_id,
        "check_suite_node_id": node_id("CS_kwDO", run.check_suite_id),
        "url": run_api,
        "html_url": f"{urls.web}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": pulls,
        "created_at": timestamp(run.created_at),
        "updated_at": timestamp(attempt.updated_at),
        "actor": user(run.actor, urls),
        "run_attempt": attempt.number,
        "referenced_workflows": [],
        "run_started_at": timestamp(attempt.started_at),
        "triggering_actor": user(attempt.triggering_actor, urls),
        "jobs_url": f"{run_api}/jobs",
        "logs_url": f"{run_api}/logs",
        "check_suite_url": f"{api}/check-suites/{run.check_suite_id}",
        "artifacts_url": f"{run_api}/artifacts",
        "cancel_url": f"{run_api}/cancel",
        "rerun_url": f"{run_api}/rerun",
        "previous_attempt_url": (
            f"{run_api}/attempts/{attempt.number - 1}" if attempt.number > 1 else None
        ),
        "workflow_url": f"{api}/actions/workflows/{run.workflow_id}",
        "head_commit": {
            "id": run.head_sha,
            "tree_id": run.head_sha[::-1],
            "message": run.display_title,
            "timestamp": timestamp(run.created_at),
            "author": {
                "name": run.actor.login,
                "email": f"{run.actor.login}@users.noreply.github.com",
            },
            "committer": {"name": "GitHub", "email": "noreply@github.com"},
        },
        "repository": minimal_repository(repo, urls),
        "head_repository": minimal_repository(run.head_repository, urls),
        "head_repository_id": run.head_repository.id,
    }


def _step(step: SimStep) -> Json:
    return {
        "name": step.name,
        "status": step.status,
        "conclusion": step.conclusion,
        "number": step.number,
        "started_at": timestamp(step.started_at),
        "completed_at": timestamp(step.completed_at),
    }


def job(j: SimJob, urls: Urls) -> Json:
    """Job. A queued job's `started_at` is its creation time, as on GitHub."""
    run = j.run
    api = f"{urls.api}/repos/{run.repository.full_name}"
    return {
        "id": j.id,
        "run_id": run.id,
        "workflow_name": run.workflow_name,
        "head_branch": run.head_branch,
        "run_url": f"{api}/actions/runs/{run.id}",
        "run_attempt": j.run_attempt,
        "node_id": node_id("CR_kwDO", j.id),
        "head_sha": run.head_sha,
        "url": f"{api}/actions/jobs/{j.id}",
        "html_url": f"{urls.web}/{run.repository.full_name}/actions/runs/{run.id}/job/{j.id}",
        "status": j.status,
        "conclusion": j.conclusion,
        "created_at": timestamp(j.created_at),
        "started_at": timestamp(j.started_at if j.started_at is not None else j.created_at),
        "completed_at": timestamp(j.completed_at),
        "name": j.name,
        "steps": [_step(s) for s in j.steps],
        "check_run_url": f"{api}/check-runs/{j.id}",
        "labels": list(j.labels),
        "runner_id": j.runner_id,
        "runner_name": j.runner_name,
        "runner_group_id": j.runner_group_id,
        "runner_group_name": j.runner_group_name,
    }


def annotation(a: Annotation, j: SimJob, urls: Urls) -> Json:
    """CheckAnnotation."""
    repo = j.run.repository.full_name
    return {
        "path": a.path,
        "blob_href": f"{urls.web}/{repo}/blob/{j.run.head_sha}/{a.path}",
        "start_line": a.start_line,
        "start_column": a.start_column,
        "end_line": a.end_line,
        "end_column": a.end_column,
        "annotation_level": a.level,
        "title": a.title,
        "message": a.message,
        "raw_details": "",
    }


def repository(repo: SimRepo, urls: Urls) -> Json:
    """Repository: the minimal form plus clone URLs, counters and flags."""
    host = urls.web.split("://", 1)[-1]
    created = timestamp(repo.created_at)
    return {
        **minimal_repository(repo, urls),
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "clone_url": f"{urls.web}/{repo.full_name}.git",
        "svn_url": f"{urls.web}/{repo.full_name}",
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "license": None,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 0,
        "default_branch": repo.default_branch,
        "open_issues_count": 0,
        "open_issues": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": True,
        "has_wiki": True,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private" if repo.private else "public",
        "pushed_at": created,
        "created_at": created,
        "updated_at": created,
        "allow_forking": True,
        "web_commit_signoff_required": False,
    }


def pull_request_simple(pull: SimPullRequest, urls: Urls) -> Json:
    """PullRequestSimple, as `GET /repos/{owner}/{repo}/pulls` lists it."""
    base_name = pull.base_repository.full_name
    api = f"{urls.api}/repos/{base_name}"
    url = f"{api}/pulls/{pull.number}"
    html = f"{urls.web}/{base_name}/pull/{pull.number}"
    created = timestamp(pull.created_at)

    def side(repo: SimRepo, ref: str, sha: str) -> Json:
        return {
            "label": f"{repo.owner.login}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": user(repo.owner, urls),
            "repo": repository(repo, urls),
        }

    links = {
        "self": url,
        "html": html,
        "issue": f"{api}/issues/{pull.number}",
        "comments": f"{api}/issues/{pull.number}/comments",
        "review_comments": f"{url}/comments",
        "review_comment": f"{api}/pulls/comments{{/number}}",
        "commits": f"{url}/commits",
        "statuses": f"{api}/statuses/{pull.head_sha}",
    }
    return {
        "url": url,
        "id": pull.id,
        "node_id": node_id("PR_kwDO", pull.id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": links["issue"],
        "commits_url": links["commits"],
        "review_comments_url": links["review_comments"],
        "review_comment_url": links["review_comment"],
        "comments_url": links["comments"],
        "statuses_url": links["statuses"],
        "number": pull.number,
        "state": pull.state,
        "locked": False,
        "title": pull.title,
        "user": user(pull.user, urls),
        "body": None,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": created,
        "updated_at": created,
        "closed_at": None,
        "merged_at": None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": side(pull.head_repository, pull.head_branch, pull.head_sha),
        "base": side(pull.base_repository, pull.base_branch, pull.base_sha),
        "_links": {name: {"href": href} for name, href in links.items()},
        "author_association": "CONTRIBUTOR" if pull.head_repository.fork else "MEMBER",
        "auto_merge": None,
        "draft": False,
    }


def simulator_repo(repo: SimRepo) -> Json:
    """The control API's view of a repository."""
    return {
        "id": repo.id,
        "full_name": repo.full_name,
        "owner_login": repo.owner_login,
        "owner_id": repo.owner_id,
        "private": repo.private,
        "fork": repo.fork,
    }
