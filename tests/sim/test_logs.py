"""Job logs: when GitHub lets them be read, how the download works, and what they look like."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from issuer.sim import GitHubSim, SimJob, SimRun
from tests.sim.support import LOG_LINE, UPSTREAM, FakeClock, log_texts, read_log


@pytest.fixture
def job(sim: GitHubSim, fork_run: SimRun) -> SimJob:
    return sim.add_job(fork_run, "claim")


def logs_url(job: SimJob) -> str:
    return f"{UPSTREAM}/actions/jobs/{job.id}/logs"


def finished(
    sim: GitHubSim, job: SimJob, *lines: str, script: str = "issuer token claim"
) -> SimJob:
    sim.start_step(job, "claim", script=script)
    for line in lines:
        sim.print_line(job, line)
    sim.finish_job(job)
    return job


# -- the download ---------------------------------------------------------------------------


def test_a_completed_jobs_log_redirects_to_another_host(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    finished(sim, job)
    response = api.get(logs_url(job))
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.netloc != urlsplit(str(api.base_url)).netloc
    assert f"{location.scheme}://{location.netloc}" == sim.blob_base_url


def test_the_blob_serves_the_whole_log_as_text_to_a_request_without_credentials(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    finished(sim, job, "hello")
    location = api.get(logs_url(job)).headers["location"]
    blob = httpx.get(location)
    assert blob.status_code == 200
    assert blob.headers["content-type"].startswith("text/plain")
    assert blob.content.startswith("\ufeff".encode())
    assert "hello" in log_texts(blob.text)


def test_the_blob_host_refuses_any_request_carrying_authorization(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    finished(sim, job)
    location = api.get(logs_url(job)).headers["location"]
    blob = httpx.get(location, headers={"Authorization": "Bearer ghp_leaked"})
    assert blob.status_code == 400
    assert blob.headers["content-type"] == "application/xml"
    assert "<Code>InvalidAuthenticationInfo</Code>" in blob.text
    assert sim.request_log[-1] == ("GET", urlsplit(location).path, 400, True)


def test_the_redirect_expires_after_blob_url_ttl(
    api: httpx.Client, sim: GitHubSim, job: SimJob, clock: FakeClock
) -> None:
    sim.settings.blob_url_ttl = 60
    finished(sim, job)
    location = api.get(logs_url(job)).headers["location"]
    clock.advance(59)
    assert httpx.get(location).status_code == 200
    clock.advance(2)
    expired = httpx.get(location)
    assert expired.status_code == 403
    assert "<Code>AuthenticationFailed</Code>" in expired.text


def test_a_tampered_blob_url_is_refused(api: httpx.Client, sim: GitHubSim, job: SimJob) -> None:
    other = sim.add_job(job.run, "other")
    finished(sim, job)
    finished(sim, other)
    location = api.get(logs_url(job)).headers["location"]
    forged = location.replace(f"workflow-job-run-{job.id}", f"workflow-job-run-{other.id}")
    assert httpx.get(forged).status_code == 403


def test_log_downloads_count_against_no_rate_limit(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    finished(sim, job)
    read_log(api, job.id)
    assert sim.counted_requests(None) == 1


def test_injected_failures_spare_blob_downloads(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    finished(sim, job)
    location = api.get(logs_url(job)).headers["location"]
    sim.fail_next(1)
    assert httpx.get(location).status_code == 200
    assert api.get(logs_url(job)).status_code == 503


# -- when a log can be read -------------------------------------------------------------


@pytest.mark.parametrize("started", [False, True], ids=["queued", "in_progress"])
def test_an_unfinished_jobs_log_is_404_from_the_api_by_default(
    api: httpx.Client, sim: GitHubSim, job: SimJob, started: bool
) -> None:
    if started:
        sim.start_step(job, "claim", script="issuer token claim")
    response = api.get(logs_url(job))
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


@pytest.mark.parametrize("started", [False, True], ids=["queued", "in_progress"])
def test_an_unfinished_jobs_log_can_redirect_to_a_blob_that_does_not_exist(
    api: httpx.Client, sim: GitHubSim, job: SimJob, started: bool
) -> None:
    sim.settings.running_log = "blob_404"
    if started:
        sim.start_step(job, "claim", script="issuer token claim")
    response = api.get(logs_url(job))
    assert response.status_code == 302
    blob = httpx.get(response.headers["location"])
    assert blob.status_code == 404
    assert blob.headers["x-ms-error-code"] == "BlobNotFound"
    assert "<Code>BlobNotFound</Code>" in blob.text


def test_a_finished_jobs_log_is_404_during_the_finalize_window(
    api: httpx.Client, sim: GitHubSim, job: SimJob, clock: FakeClock
) -> None:
    sim.settings.finalize_seconds = 30
    finished(sim, job)
    assert api.get(logs_url(job)).status_code == 404
    clock.advance(29.5)
    assert api.get(logs_url(job)).status_code == 404
    clock.advance(0.5)
    assert api.get(logs_url(job)).status_code == 302


def test_a_finished_jobs_log_is_readable_while_its_run_goes_on(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    finished(sim, job, "the challenge")
    exchange = sim.add_job(job.run, "exchange")
    sim.start_step(exchange, "exchange", script="issuer token exchange")
    assert "the challenge" in log_texts(read_log(api, job.id))
    assert api.get(logs_url(exchange)).status_code == 404


def test_a_job_that_never_ran_has_no_log(api: httpx.Client, sim: GitHubSim, job: SimJob) -> None:
    sim.finish_job(job, "skipped")
    assert api.get(logs_url(job)).status_code == 404


# -- what a log looks like --------------------------------------------------------------


def test_the_log_starts_with_a_bom_and_every_line_with_a_7_digit_utc_timestamp(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    log = read_log(api, finished(sim, job, "one", "two").id)
    assert log.startswith("\ufeff")
    lines = log.removeprefix("\ufeff").splitlines()
    assert len(lines) > 3
    assert all(LOG_LINE.match(line) for line in lines)


def test_a_message_with_embedded_newlines_continues_without_timestamps(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    log = read_log(api, finished(sim, job, "::warning::first%0Asecond%0Athird").id)
    lines = log.removeprefix("\ufeff").splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith(" ##[warning]first"))
    assert LOG_LINE.match(lines[at])
    assert lines[at + 1 : at + 3] == ["second", "third"]


@pytest.mark.parametrize("separator", ["\n", "\r", "\r\n"])
def test_printed_text_is_split_into_lines_as_the_runner_reads_them(
    api: httpx.Client, sim: GitHubSim, job: SimJob, separator: str
) -> None:
    log = read_log(api, finished(sim, job, f"first{separator}second").id)
    lines = log.removeprefix("\ufeff").splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith(" first"))
    assert LOG_LINE.match(lines[at + 1]) and lines[at + 1].endswith(" second")


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0b", "\x1c"])
def test_other_unicode_separators_do_not_end_a_line(
    api: httpx.Client, sim: GitHubSim, job: SimJob, separator: str
) -> None:
    log = read_log(api, finished(sim, job, f"first{separator}second").id)
    assert f" first{separator}second\n" in log


def test_a_legacy_command_in_the_middle_of_a_line_becomes_a_line_of_its_own(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    log = read_log(api, finished(sim, job, "npm WARN deprecated x@1: ##[notice]hello").id)
    assert any(
        LOG_LINE.match(line) and line.endswith(" ##[notice]hello") for line in log.split("\n")
    )


def test_a_run_step_echoes_its_script_shell_and_env_in_a_group_before_its_output(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.start_step(job, "claim", script="echo one\necho two\n", env={"AUDIENCE": "builder"})
    sim.print_line(job, "one")
    sim.finish_job(job)
    texts = log_texts(read_log(api, job.id))
    at = texts.index("##[group]Run echo one")
    assert texts[at : at + 8] == [
        "##[group]Run echo one",
        "\x1b[36;1mecho one\x1b[0m",
        "\x1b[36;1mecho two\x1b[0m",
        "shell: /usr/bin/bash -e {0}",
        "env:",
        "  AUDIENCE: builder",
        "##[endgroup]",
        "one",
    ]


def test_add_mask_masks_later_lines_only_and_prints_nothing_itself(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    texts = log_texts(
        read_log(api, finished(sim, job, "early s3cret", "::add-mask::s3cret", "late s3cret").id)
    )
    assert "early s3cret" in texts
    assert "late ***" in texts
    assert not any("add-mask" in text for text in texts)


def test_masks_apply_to_later_steps_headers_too(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.start_step(job, "mask", script="mask it")
    sim.print_line(job, "::add-mask::s3cret")
    sim.start_step(job, "echo", script="echo s3cret")
    sim.finish_job(job)
    assert "##[group]Run echo ***" in log_texts(read_log(api, job.id))


@pytest.mark.parametrize(
    ("printed", "logged"),
    [
        ("::notice::challenge seen", "##[notice]challenge seen"),
        ("::notice title=Claim,file=ci.yml::challenge seen", "##[notice]challenge seen"),
        ("::warning::careful", "##[warning]careful"),
        ("::error::broken", "##[error]broken"),
        ("::group::Details", "##[group]Details"),
        ("::endgroup::", "##[endgroup]"),
        ("::notice::two%0Alines", "##[notice]two"),
    ],
)
def test_workflow_commands_are_consumed_and_printed_as_markers(
    api: httpx.Client, sim: GitHubSim, job: SimJob, printed: str, logged: str
) -> None:
    texts = log_texts(read_log(api, finished(sim, job, printed).id))
    assert logged in texts
    assert printed not in texts


def test_debug_messages_are_not_logged(api: httpx.Client, sim: GitHubSim, job: SimJob) -> None:
    texts = log_texts(read_log(api, finished(sim, job, "::debug::hidden detail").id))
    assert not any("hidden detail" in text for text in texts)


def test_stop_commands_prints_commands_verbatim_until_its_token(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    texts = log_texts(
        read_log(
            api,
            finished(
                sim,
                job,
                "::stop-commands::pause1",
                "::notice::literal",
                "::pause1::",
                "::notice::live",
            ).id,
        )
    )
    assert "::notice::literal" in texts
    assert "##[notice]live" in texts
    assert sim.visible_annotations(job)[0].message == "live"


def test_color_wraps_the_printed_text_in_ansi_codes(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.start_step(job, "claim", script="issuer token claim")
    sim.print_line(job, "coloured", color="36;1")
    sim.print_line(job, "red", color="red")
    sim.finish_job(job)
    texts = log_texts(read_log(api, job.id))
    assert "\x1b[36;1mcoloured\x1b[0m" in texts
    assert "\x1b[31mred\x1b[0m" in texts


def test_a_failing_run_step_logs_the_exit_code_as_an_error(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.start_step(job, "claim", script="exit 1")
    sim.finish_step(job, "failure")
    sim.finish_job(job, "failure")
    assert "##[error]Process completed with exit code 1." in log_texts(read_log(api, job.id))


def test_a_fork_runs_set_up_step_has_no_secrets(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    assert "Secret source: None" in log_texts(read_log(api, finished(sim, job).id))
