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
    """``issuer config check``: every effective setting, secrets shown only as set or unset."""
    from dataclasses import fields

    from issuer.oidc.abuse import AbuseConfig

    try:
        settings = (IssuerConfig.from_env(os.environ), AbuseConfig.from_env(os.environ))
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    for part in settings:
        for setting in fields(part):
            value = getattr(part, setting.name)
            if not setting.repr:
                shown = "(set)" if value not in (None, "", b"", ()) else "(unset)"
            elif value is None:
                shown = "(none)"
            elif isinstance(value, tuple):
                shown = ", ".join(str(item) for item in value) or "(none)"
            else:
                shown = str(value)
            print(f"{setting.name} = {shown}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from issuer.demo import run_demo

    return run_demo()


def _github_sim(args: argparse.Namespace) -> int:
    from issuer.sim.serve import main_github_sim

    main_github_sim(args.port)
    return 0


def _keys(args: argparse.Namespace) -> int:
    """``issuer keys list | rotate | retire KID``: on the keyring shared through Redis."""
    from issuer.oidc.keys import Keys, UnknownKey
    from issuer.oidc.service import key_policy, redis_store

    config = _config_or_none()
    if config is None:
        return 2
    if not config.redis_url or config.key_encryption_key is None:
        print("issuer: ISSUER_REDIS_URL: keys are shared only through Redis", file=sys.stderr)
        return 2
    kek = config.key_encryption_key
    redis_url = config.redis_url

    async def act() -> list[dict[str, object]]:
        store = redis_store(redis_url)
        try:
            keys = Keys(store, kek, key_policy(config))
            await keys.load()
            if args.keys_command == "rotate":
                kid = await keys.rotate()
                print(f"next key {kid}: published, signs from its activation time")
            elif args.keys_command == "retire":
                await keys.retire(args.kid)
                print(f"retired {args.kid}: replicas drop it within a refresh interval")
            return keys.keyring.summary()
        finally:
            await store.close()

    try:
        summary = asyncio.run(act())
    except UnknownKey as error:
        print(f"issuer: no key {error}", file=sys.stderr)
        return 1
    for key in summary:
        retired = "" if key["retired"] is None else f"  retired {key['retired']}"
        print(
            f"{key['kid']}  {key['alg']}  {key['state']}  created {key['created']}"
            f"  activated {key['activated']}{retired}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="issuer", description="OIDC tokens for GitHub Actions runs of pull requests from forks"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the issuer service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
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

    sim = commands.add_parser("github-sim", help="the GitHub simulator on its own")
    sim.add_argument("--port", type=int, default=8001)
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
