"""The switches a test can flip to make the simulator behave like each reported GitHub."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

RunningLog = Literal["api_404", "blob_404"]
AnnotationTiming = Literal["immediate", "step_end", "job_end"]
RetryAfter = Literal["seconds", "blank", "absent", "mixed"]

_CHOICES: dict[str, tuple[object, ...]] = {
    "running_log": ("api_404", "blob_404"),
    "annotation_timing": ("immediate", "step_end", "job_end"),
    "rate_limit_status": (403, 429),
    "secondary_retry_after": ("seconds", "blank", "absent", "mixed"),
}


@dataclass
class SimSettings:
    """Behaviour where GitHub is uncertain or where a test needs to choose.

    Every field may be changed at any time, also while the simulator serves requests.
    """

    # A queued or running job's log: 404 from the API, or a 302 to a blob that 404s.
    running_log: RunningLog = "api_404"
    # After a job completes, its log endpoint still answers 404 for this long.
    finalize_seconds: float = 0.0
    # When `::notice::` and friends become visible through the check-run annotations API:
    # with the job's completion, as the runner sends them on GitHub-hosted runners (GITHUB.md).
    annotation_timing: AnnotationTiming = "job_end"
    # Seconds of delay added to every API request (not to blob downloads).
    latency: float = 0.0
    # True: requests without a token get 401 instead of the unauthenticated limit.
    require_auth: bool = False
    unauthenticated_limit: int = 60
    # The 302 Location of a job log expires this long after it was handed out.
    blob_url_ttl: float = 60.0
    # GitHub answers an exhausted primary rate limit with 403 or with 429.
    rate_limit_status: Literal[403, 429] = 403
    # A new installation token is refused (401) for this long after it was issued.
    installation_token_delay: float = 0.0
    # GitHub's secondary rate limit, per bucket as the primary one (0 turns either part off):
    # points per rolling minute (GET/HEAD 1, a 304 too; POST/PATCH/PUT/DELETE 5) ...
    secondary_points_per_minute: int = 900
    # ... and requests in flight at once (the latency's sleep included).
    secondary_concurrency: int = 100
    # A refusal's `retry-after`: whole seconds until enough points left the window, a blank
    # header, none at all, or those three in turn ("mixed"), as GitHub sends each at times.
    secondary_retry_after: RetryAfter = "seconds"
    # Webhook deliveries (once `deliver_to` gave a target), as GitHub's can come: this many
    # seconds late; each sent twice (one delivery id); held and sent in reverse order in
    # batches of this many (0 or 1: in order; a batch not full goes out after a second);
    # lost: all of them, or each with this probability, drawn from a random generator seeded
    # with `webhook_seed` (`drop_deliveries(n)` loses the next n).
    webhook_delay: float = 0.0
    webhook_duplicate: bool = False
    webhook_reorder: int = 0
    webhook_drop: bool = False
    webhook_drop_probability: float = 0.0
    webhook_seed: int = 0

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply `changes` (e.g. from JSON) after checking every name, type and choice."""
        known = {f.name: f for f in fields(self)}
        checked: dict[str, object] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif isinstance(current, int) and name in _CHOICES:
                if value not in _CHOICES[name]:
                    raise ValueError(f"{name} must be one of {_CHOICES[name]}")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
            elif isinstance(current, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{name} must be a non-negative number")
                value = float(value)
            elif value not in _CHOICES[name]:
                raise ValueError(f"{name} must be one of {_CHOICES[name]}")
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
