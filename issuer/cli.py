"""The ``issuer`` console script."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from issuer.builder import cli as builder_cli
from issuer.client import cli as token_cli
from issuer.oidc.config import ConfigError, IssuerConfig


def _config_or_none() -> IssuerConfig | None:
    """The configuration, or None after one line on stderr naming the bad setting."""
    try:
        return IssuerConfig.from_env(os.environ)
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from issuer.oidc.abuse import AbuseConfig
    from issuer.oidc.app import begin_shutdown, create_app
    from issuer.oidc.claims import MAX_WAIT
    from issuer.oidc.keys_cli import check_keyring
    from issuer.oidc.service import IssuerService
    from issuer.web.http import DrainingServer, server_config
    from issuer.web.logs import configure_json_logging
    from issuer.web.metrics_listener import serve_metrics

    config = _config_or_none()
    if config is None:
        return 2
    try:
        abuse = AbuseConfig.from_env(os.environ)
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    try:
        if config.redis_url:  # one line naming the variable, not a traceback at start-up
            asyncio.run(check_keyring(config))
        serve_metrics("ISSUER_METRICS_ADDRESS", config.metrics_address)
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    configure_json_logging()
    app = create_app(lambda: IssuerService.start(config), abuse=abuse)
    config_of_server = server_config(
        app, host=args.host, port=args.port, graceful_timeout=MAX_WAIT + 5
    )
    # uvicorn re-raises the signal that stopped it once it is done: SIGINT as
    # KeyboardInterrupt (caught here, as uvicorn.run does), SIGTERM as the default action.
    with contextlib.suppress(KeyboardInterrupt):
        DrainingServer(config_of_server, on_exit=lambda: begin_shutdown(app)).run()
    return 0


def _config_check(args: argparse.Namespace) -> int:
    """``issuer config check``: every effective setting under its variable, secrets shown
    only as set or unset."""
    from issuer.oidc.abuse import AbuseConfig
    from issuer.oidc.config_report import report

    try:
        issuer, abuse = IssuerConfig.from_env(os.environ), AbuseConfig.from_env(os.environ)
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    for line in report(issuer, abuse, os.environ):
        print(line)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from issuer.demo import run_demo

    return run_demo()


def _github_sim(args: argparse.Namespace) -> int:
    from issuer.sim.serve import main_github_sim

    secret = None
    if args.webhook_secret_file is not None:
        try:
            with open(args.webhook_secret_file, encoding="utf-8") as file:
                secret = file.read().strip()
        except OSError as exc:
            print(f"--webhook-secret-file: cannot read it ({exc.strerror})", file=sys.stderr)
            return 2
        if not secret:
            print("--webhook-secret-file: the file is empty", file=sys.stderr)
            return 2
    if (args.webhook_url is None) != (secret is None):
        print("--webhook-url and --webhook-secret-file go together", file=sys.stderr)
        return 2
    main_github_sim(args.port, host=args.host, webhook_url=args.webhook_url, webhook_secret=secret)
    return 0


def _keys(args: argparse.Namespace) -> int:
    """``issuer keys list | rotate | retire KID``: on the keyring shared through Redis."""
    from issuer.oidc.keys import Keys, UnknownKey
    from issuer.oidc.keys_cli import describe, with_keys

    config = _config_or_none()
    if config is None:
        return 2
    if not config.redis_url or config.key_encryption_key is None:
        print(
            "issuer: ISSUER_REDIS_URL: is required: keys are shared only through Redis "
            "(with ISSUER_KEY_ENCRYPTION_KEY)",
            file=sys.stderr,
        )
        return 2

    async def act(keys: Keys) -> list[dict[str, object]]:
        if args.keys_command == "rotate":
            kid = await keys.rotate()
            print(f"next key {kid}: published, signs from its activation time")
        elif args.keys_command == "retire":
            await keys.retire(args.kid)
            print(f"retired {args.kid}: replicas drop it within a refresh interval")
        return keys.keyring.summary()

    try:
        summary = asyncio.run(with_keys(config, act))
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    except UnknownKey as error:
        print(
            f"issuer: no key {error} in the keyring (`issuer keys list` shows them)",
            file=sys.stderr,
        )
        return 1
    for line in describe(summary):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="issuer", description="OIDC tokens for GitHub Actions runs of pull requests from forks"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the issuer service",
        description="Run the issuer service, configured by ISSUER_* environment variables "
        "(README: Configuration; `issuer config check` prints them). Metrics are served on "
        "ISSUER_METRICS_ADDRESS only.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.set_defaults(handler=_serve)

    config_command = commands.add_parser("config", help="the issuer's configuration")
    config_commands = config_command.add_subparsers(dest="config_command", required=True)
    config_check = config_commands.add_parser(
        "check", help="validate the ISSUER_* settings and print them, secrets redacted"
    )
    config_check.set_defaults(handler=_config_check)

    demo = commands.add_parser("demo", help="the whole flow on this machine, nothing configured")
    demo.set_defaults(handler=_demo)

    token = commands.add_parser("token", help="the workflow step: claim, print, exchange")
    token_cli.add_arguments(token)
    token.set_defaults(handler=token_cli.run)

    build = commands.add_parser(
        "build", help="the workflow step: the token traded for an ephemeral builder, an image built"
    )
    token_cli.add_build_arguments(build)
    build.set_defaults(handler=token_cli.run_build)

    sim = commands.add_parser(
        "github-sim",
        help="the GitHub simulator on its own",
        description="Serve an empty GitHub simulator: the REST API the issuer reads, a log "
        "blob host, and the control API under /_sim/ that makes repositories, runs, jobs and "
        "log lines (docs/simulator.md); with --webhook-url, the GitHub App's webhook "
        "deliveries as the runs move. For tests and demos only: it has no authentication.",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=30),
    )
    sim.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container, as compose's "
        "demo profile runs it)",
    )
    sim.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    sim.add_argument(
        "--webhook-url",
        metavar="URL",
        help="send the GitHub App's webhook deliveries (workflow_job, workflow_run) there, "
        "as GitHub does; needs --webhook-secret-file (default: no deliveries)",
    )
    sim.add_argument(
        "--webhook-secret-file",
        metavar="PATH",
        help="a file holding the webhook secret the deliveries are signed with "
        "(X-Hub-Signature-256); a file, so that the secret is never on a command line",
    )
    sim.set_defaults(handler=_github_sim)

    keys = commands.add_parser("keys", help="signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_list = key_commands.add_parser(
        "list", help="kid, algorithm, state, created, activated, retired"
    )
    key_list.set_defaults(handler=_keys)
    key_rotate = key_commands.add_parser(
        "rotate", help="publish a next key now; it signs one JWKS cache lifetime later"
    )
    key_rotate.set_defaults(handler=_keys)
    key_retire = key_commands.add_parser(
        "retire", help="remove a key at once (a compromised key); its tokens stop verifying"
    )
    key_retire.add_argument("kid")
    key_retire.set_defaults(handler=_keys)

    builder_cli.register(commands)  # `issuer builder serve`, `issuer trust ...`
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
