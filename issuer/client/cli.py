"""``issuer token``: the workflow step, whole or in its two halves."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from issuer.client.workflow import (
    ClientError,
    ExitCode,
    RunIdentity,
    WorkflowClient,
    mask_line,
    write_output,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "mode",
        nargs="?",
        choices=["claim", "exchange"],
        help="only one half: claim (print the line) or exchange (get the token)",
    )
    parser.add_argument(
        "--issuer",
        default=os.environ.get("ISSUER_URL"),
        help="the issuer's URL (default: $ISSUER_URL)",
    )
    parser.add_argument("--audience", help="the token's audience (default: the issuer's)")
    parser.add_argument(
        "--claim",
        default=os.environ.get("ISSUER_CLAIM"),
        help="exchange: the `claim` output of the claim step ($ISSUER_CLAIM)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the token (default 300)"
    )


def _say(line: str) -> None:
    print(line, flush=True)


def _emit_output(env: Mapping[str, str], name: str, value: str, *, secret: bool) -> None:
    output = env.get("GITHUB_OUTPUT")
    if output:
        write_output(output, name, value)
    elif secret and name == "claim":
        raise ClientError(
            "GITHUB_OUTPUT is not set: the claim is a secret and is never printed; "
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
    in_actions = env.get("GITHUB_ACTIONS") == "true"
    exchange_url = args.claim
    if args.mode != "exchange":
        if not args.issuer:
            raise ClientError("--issuer (or ISSUER_URL) is required", ExitCode.USAGE)
        client = WorkflowClient(args.issuer, say=_say)
        claim = client.claim(RunIdentity.from_env(env), args.audience)
        print(claim.challenge_line, flush=True)
        exchange_url = claim.exchange_url
        if args.mode == "claim":
            _emit_output(env, "claim", exchange_url, secret=True)
            _say("challenge printed; exchange the claim in a later job or step")
            return ExitCode.OK
        _say("challenge printed; waiting for GitHub to show it to the issuer")
    if not exchange_url:
        raise ClientError("--claim (or ISSUER_CLAIM) is required to exchange", ExitCode.USAGE)
    issuer_url = exchange_url.split("/exchange/")[0]
    client = WorkflowClient(issuer_url, say=_say)
    token = client.exchange(exchange_url, args.timeout)
    if in_actions:
        print(mask_line(token), flush=True)
    _emit_output(env, "token", token, secret=True)
    _say("token received")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="issuer token")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
