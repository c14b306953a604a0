"""``issuer token``: the workflow step, whole or in its two halves, or its relay; and
``issuer build``: the token traded for an ephemeral builder that builds the image.

Modes: ``token`` (claim, print the line, exchange; with ``--relay SLOT``: claim on that relay
slot, print nothing, exchange), ``claim`` and ``exchange`` (the two halves, for two steps of
one job), ``relay`` (print the challenge line of a relay slot's claim, for a parallel job).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from issuer.client import messages
from issuer.client.build import BuildStep, Interrupted, Interrupts, build
from issuer.client.builderclient import BuildOptions
from issuer.client.codes import ClientError, ExitCode
from issuer.client.context import ContextError, dockerfile_in_context
from issuer.client.pacing import print_challenge
from issuer.client.workflow import (
    CLAIM_ID,
    SLOT,
    RunIdentity,
    WorkflowClient,
    mask_line,
    write_output,
)

MODES = ("token", "claim", "exchange", "relay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "mode",
        nargs="?",
        choices=MODES,
        default="token",
        help="token (default): both halves (with --relay: claim on a relay slot, print "
        "nothing); claim: print the line; exchange: get the token; relay: print the challenge "
        "line of a relay slot's claim",
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
        "--relay",
        "--slot",
        dest="relay",
        default=os.environ.get("ISSUER_RELAY_SLOT") or None,
        metavar="SLOT",
        help="token: claim on this relay slot (a parallel job prints the line); relay: the "
        "slot whose line to print (default: $ISSUER_RELAY_SLOT)",
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
    relay = _relay_slot(args)
    if args.mode == "relay":
        return _relay(args, env, relay)
    if args.mode == "exchange":
        claim_id = _claim_to_exchange(args)
    else:
        claim_id = _make_claim(args, env, relay)
        if args.mode == "claim":
            _emit_claim(env, claim_id)
            return ExitCode.OK
    client = WorkflowClient(_issuer(args), say=_say)
    token = client.exchange(claim_id, args.timeout, relay=relay)
    if env.get("GITHUB_ACTIONS") == "true":
        # First, before anything that could hold the token: later log lines show `***`.
        print(mask_line(token), flush=True)
    _emit_output(env, "token", token)
    _say("token received" + (": output `token`" if env.get("GITHUB_OUTPUT") else ""))
    return ExitCode.OK


def _relay_slot(args: argparse.Namespace) -> str | None:
    relay = args.relay or None
    if relay is None:
        if args.mode == "relay":
            raise ClientError(
                "no relay slot. Fix: pass --slot SLOT (the action's `relay-slot`), the same "
                "slot the exchanging job names with `issuer token --relay SLOT`",
                ExitCode.USAGE,
            )
        return None
    if not SLOT.match(relay):
        raise ClientError(
            "the relay slot must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-' "
            "(e.g. the exchanging job's name). Fix: change `relay-slot`",
            ExitCode.USAGE,
        )
    if args.mode not in ("token", "relay"):
        raise ClientError(
            f"a relay slot works with mode `token` (the exchanging job) and mode `relay` (the "
            f"job that prints), not with mode `{args.mode}`. Fix: drop `relay-slot`, or see "
            + messages.RELAY_PATTERN,
            ExitCode.USAGE,
        )
    return str(relay)


def _relay(args: argparse.Namespace, env: Mapping[str, str], slot: str | None) -> int:
    """Print the challenge line of the slot's claim, so that this job's log shows it."""
    assert slot is not None
    client = WorkflowClient(_issuer(args), say=_say)
    line = client.relay(RunIdentity.from_env(env), slot, args.timeout)
    print_challenge(line)
    _say(
        f"challenge of relay slot {slot!r} printed: this job must now complete, so that GitHub "
        "serves its log to the issuer"
    )
    return ExitCode.OK


def _emit_claim(env: Mapping[str, str], claim_id: str) -> None:
    """Mask the claim, then write it: the next step's header echoes its inputs, and inside a
    job a mask applies to every later line. (A masked output cannot cross jobs: GitHub drops
    job outputs that hold masked values.)"""
    if env.get("GITHUB_ACTIONS") == "true":
        print(mask_line(claim_id), flush=True)
    _emit_output(env, "claim", claim_id)
    _say(
        "challenge printed; claim written to the `claim` output (masked): exchange it in a "
        "later step of this job (mode: exchange); across jobs, use the relay pattern"
    )


def _issuer(args: argparse.Namespace) -> str:
    if not args.issuer:
        raise ClientError(
            "no issuer URL. Fix: pass --issuer (the action's `issuer-url`) or set ISSUER_URL",
            ExitCode.USAGE,
        )
    return str(args.issuer)


def _make_claim(args: argparse.Namespace, env: Mapping[str, str], relay: str | None) -> str:
    """Claim; print the challenge line, unless another job (the relay) prints it."""
    client = WorkflowClient(_issuer(args), say=_say)
    claim = client.claim(RunIdentity.from_env(env), args.audience, args.timeout, relay=relay)
    if relay is None:
        print_challenge(claim.challenge_line)
    else:
        _say(
            f"claimed relay slot {relay!r}: a parallel job prints the challenge "
            f"(`issuer token relay --slot {relay}`, the action's mode `relay`)"
        )
    return claim.claim_id


def _claim_to_exchange(args: argparse.Namespace) -> str:
    """The claim id of the `claim` input; the issuer URL must be given too."""
    claim = str(args.claim or "").strip()
    if not CLAIM_ID.match(claim):
        raise ClientError(messages.missing_claim(), ExitCode.USAGE)
    _issuer(args)
    return claim


_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_SIZE = re.compile(r"^([0-9]+)([KMG]?)$")
DEFAULT_MAX_CONTEXT = "64M"  # the builder's own limit (issuer/builder/worker.py): 413 beyond it


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--builder",
        metavar="URL",
        default=os.environ.get("ISSUER_BUILDER_URL") or None,
        help="the builder service's URL (default: $ISSUER_BUILDER_URL)",
    )
    parser.add_argument(
        "--project",
        metavar="P",
        default=os.environ.get("ISSUER_PROJECT") or None,
        help="the project of the builder's trust relationship (default: $ISSUER_PROJECT)",
    )
    parser.add_argument(
        "--context", metavar="DIR", default=".", help="the build context (default: .)"
    )
    parser.add_argument(
        "--file",
        metavar="F",
        help="the Dockerfile: a path as `docker build -f` takes it, inside the context "
        "(default: CONTEXT/Dockerfile)",
    )
    parser.add_argument(
        "--target", metavar="T", help="the Dockerfile stage to build (default: the last)"
    )
    parser.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="K=V",
        help="a build argument (K alone: its value from the environment); visible in the "
        "build's request and log, never for secrets",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="save the image's OCI archive to this file"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the OIDC token from this file (- for stdin); default: $ISSUER_OIDC_TOKEN "
        "(the token never goes in arguments)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to keep trying while the builder service is unreachable (default 60)",
    )
    parser.add_argument(
        "--max-context",
        default=DEFAULT_MAX_CONTEXT,
        metavar="SIZE",
        help=f"refuse a packed context over SIZE bytes (K, M, G suffixes; default "
        f"{DEFAULT_MAX_CONTEXT}) before anything is sent",
    )


def run_build(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    actions = env.get("GITHUB_ACTIONS") == "true"
    try:
        with Interrupts() as interrupts:
            token = _oidc_token(args, env)
            if actions:
                print(mask_line(token), flush=True)  # first, before anything could print it
            build(
                _build_step(args, env),
                token,
                say=_say,
                warn=lambda text: _warn(text, actions),
                actions=actions,
                set_output=lambda name, value: _set_output(env, name, value),
                interrupts=interrupts,
            )
    except ClientError as error:
        print(f"::error title=fork OIDC build::{error}", flush=True)
        return error.exit_code
    except Interrupted as interrupted:
        print(f"::error title=fork OIDC build::{interrupted}", flush=True)
        return 128 + interrupted.signum
    return ExitCode.OK


def _warn(text: str, actions: bool) -> None:
    print(f"::warning title=fork OIDC build::{text}" if actions else f"warning: {text}", flush=True)


def _set_output(env: Mapping[str, str], name: str, value: str) -> None:
    if env.get("GITHUB_OUTPUT"):
        write_output(env["GITHUB_OUTPUT"], name, value)


def _oidc_token(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """The OIDC token, from --token-file or $ISSUER_OIDC_TOKEN; never echoed."""
    if args.token_file:
        try:
            if args.token_file == "-":
                token = sys.stdin.read()
            else:
                token = Path(args.token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ClientError(
                f"the token file cannot be read ({type(error).__name__}). Fix: pass the path "
                "of a file that holds the token",
                ExitCode.USAGE,
            ) from None
        where = "the token file"
    else:
        token = env.get("ISSUER_OIDC_TOKEN", "")
        where = "ISSUER_OIDC_TOKEN"
    token = token.strip()
    if not token:
        raise ClientError(
            "no OIDC token. Fix: pass the `token` output of the token step in "
            "ISSUER_OIDC_TOKEN (the action's `token` input), or --token-file",
            ExitCode.USAGE,
        )
    if not _JWS.match(token):
        raise ClientError(
            f"{where} does not hold a JWT. Fix: pass the `token` output of the token step "
            "unchanged",
            ExitCode.USAGE,
        )
    return token


def _build_step(args: argparse.Namespace, env: Mapping[str, str]) -> BuildStep:
    if not args.builder:
        raise ClientError(
            "no builder service URL. Fix: pass --builder (the action's `builder-url`) or set "
            "ISSUER_BUILDER_URL",
            ExitCode.USAGE,
        )
    if not args.project:
        raise ClientError(
            "no project. Fix: pass --project (the action's `project`): the project of the "
            "builder service's trust relationship",
            ExitCode.USAGE,
        )
    context = Path(args.context)
    try:
        dockerfile = dockerfile_in_context(context, Path(args.file) if args.file else None)
    except ContextError as error:
        raise ClientError(str(error), ExitCode.USAGE) from None
    options = BuildOptions(dockerfile, args.target or None, _build_args(args.build_arg, env))
    output = Path(args.output) if args.output else None
    if args.timeout <= 0:
        raise ClientError("--timeout must be a positive number of seconds", ExitCode.USAGE)
    return BuildStep(
        str(args.builder),
        str(args.project),
        context,
        options,
        output,
        _size(args.max_context),
        args.timeout,
    )


def _build_args(given: list[str], env: Mapping[str, str]) -> dict[str, str]:
    build_args: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ClientError(
                "a build argument must be NAME=VALUE with NAME of letters, digits and _. Fix: "
                "correct --build-arg (the action's `build-args`, one NAME=VALUE a line)",
                ExitCode.USAGE,
            )
        if not sep:
            if name not in env:
                raise ClientError(
                    f"build argument {name} has no value and no environment variable of that "
                    "name is set. Fix: pass NAME=VALUE",
                    ExitCode.USAGE,
                )
            value = env[name]
        build_args[name] = value
    return build_args


def _size(text: str) -> int:
    match = _SIZE.match(str(text).strip().upper())
    if not match or int(match.group(1)) == 0:
        raise ClientError(
            "--max-context must be a positive size in bytes, with K, M or G for KiB, MiB or "
            "GiB (e.g. 16M)",
            ExitCode.USAGE,
        )
    unit: int = 1024 ** " KMG".index(match.group(2) or " ")
    return int(match.group(1)) * unit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="issuer token")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
