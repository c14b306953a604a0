"""``issuer token``: the workflow step, whole or in its two halves."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from issuer.client.codes import ClientError, ExitCode
from issuer.client.workflow import RunIdentity, WorkflowClient, mask_line, write_output

MODES = ("token", "claim", "exchange")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "mode",
        nargs="?",
        choices=MODES,
        default="token",
        help="token (default): both halves; claim: print the line; exchange: get the token",
    )
    parser.add_argument(
        "--issuer",
        default=os.environ.get("ISSUER_URL") or None,
        help="the issuer's URL (default: $ISSUER_URL)",
    )
    parser.add_argument(
        "--audience",
        default=os.environ.get("ISSUER_AUDIENCE") or None,
        help="the token's audience (default: $ISSUER_AUDIENCE, else the issuer's default)",
    )
    parser.add_argument(
        "--claim",
        default=os.environ.get("ISSUER_CLAIM") or None,
        help="exchange: the `claim` output of the claim step (default: $ISSUER_CLAIM)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the token (default 300)"
    )


def _say(line: str) -> None:
    print(line, flush=True)


def _emit_output(env: Mapping[str, str], name: str, value: str) -> None:
    output = env.get("GITHUB_OUTPUT")
    if output:
        write_output(output, name, value)
    elif name == "claim":
        raise ClientError(
            "GITHUB_OUTPUT is not set, and the claim is a secret that is never printed. Fix: "
            "run `issuer token` without a mode outside GitHub Actions",
            ExitCode.USAGE,
        )
    else:
        print(value, flush=True)


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        return _run(args, env)
    except ClientError as error:
        print(f"::error title=fork OIDC token::{error}", flush=True)
        return error.exit_code


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.timeout <= 0:
        raise ClientError("--timeout must be a positive number of seconds", ExitCode.USAGE)
    if args.mode == "exchange":
        exchange_url = _claim_to_exchange(args)
    else:
        exchange_url = _make_claim(args, env)
        if args.mode == "claim":
            _emit_output(env, "claim", exchange_url)
            _say(
                "challenge printed; claim written to the `claim` output: exchange it in a later "
                "job (needs:) or step (mode: exchange)"
            )
            return ExitCode.OK
    issuer_url = exchange_url.split("/exchange/")[0]
    token = WorkflowClient(issuer_url, say=_say).exchange(exchange_url, args.timeout)
    if env.get("GITHUB_ACTIONS") == "true":
        # First, before anything that could hold the token: later log lines show `***`.
        print(mask_line(token), flush=True)
    _emit_output(env, "token", token)
    _say("token received" + (": output `token`" if env.get("GITHUB_OUTPUT") else ""))
    return ExitCode.OK


def _make_claim(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if not args.issuer:
        raise ClientError(
            "no issuer URL. Fix: pass --issuer (the action's `issuer-url`) or set ISSUER_URL",
            ExitCode.USAGE,
        )
    client = WorkflowClient(args.issuer, say=_say)
    claim = client.claim(RunIdentity.from_env(env), args.audience, timeout=args.timeout)
    print(claim.challenge_line, flush=True)
    return claim.exchange_url


def _claim_to_exchange(args: argparse.Namespace) -> str:
    claim = str(args.claim or "").strip()
    if "/exchange/" not in claim:
        raise ClientError(
            "no claim to exchange. Fix: pass the `claim` output of the claim step as --claim "
            "(the action's `claim` input) or ISSUER_CLAIM",
            ExitCode.USAGE,
        )
    if args.issuer and not claim.startswith(f"{args.issuer.rstrip('/')}/exchange/"):
        raise ClientError(
            "the claim was made at another issuer than --issuer. Fix: use the same "
            "`issuer-url` for the claim and the exchange",
            ExitCode.USAGE,
        )
    return claim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="issuer token")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
