"""The GitHub simulator: the one stand-in for GitHub the tests use (facts in GITHUB.md).

    sim = GitHubSim(SimSettings(running_log="blob_404"))
    server = serve_sim(sim)                       # issuer.sim.serve; API url_of(0), blobs url_of(1)
    sim.deliver_to("http://127.0.0.1:9000/github/webhook", secret)   # deliveries from now on
    base = sim.add_repository("octo-org/octo-repo", owner_type="Organization")
    fork = sim.add_repository("contributor/octo-repo", fork_of=base)
    run = sim.create_run(base, head_repository=fork)
    job = sim.add_job(run, "claim")
    sim.start_step(job, "claim", script="issuer token claim")
    sim.print_line(job, "::notice::the challenge")
    sim.finish_job(job)

Modules: `simulator` (state and the calls above), `runner` (what the Actions runner makes of
output), `gate` (auth, rate limits, ETags, faults), `ratelimit` and `secondary` (the primary
and the secondary rate limit), `api` (REST endpoints), `payloads` (their JSON), `blobs` (the
log download host), `web` (the web UI's live-log pages, a model), `webhooks` and
`hook_payloads` (webhook deliveries and their JSON), `control` (the same calls over HTTP under
/_sim/).
"""

from issuer.sim.app import create_sim_app
from issuer.sim.model import SimJob, SimRepo, SimRun
from issuer.sim.settings import SimSettings
from issuer.sim.simulator import GitHubSim

__all__ = ["GitHubSim", "SimJob", "SimRepo", "SimRun", "SimSettings", "create_sim_app"]
