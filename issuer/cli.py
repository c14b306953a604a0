"""The ``issuer`` console script."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from issuer.client import cli as token_cli
from issuer.config import ConfigError, IssuerConfig


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from issuer.app import create_app
    from issuer.service import IssuerService

    try:
        config = IssuerConfig.from_env(os.environ)
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every URL it fetches, and a job log's download URL is signed: a credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(lambda: IssuerService.start(config))
    # uvicorn's access log would print exchange URLs, which are capabilities: ours redacts.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from issuer.demo import run_demo

    return run_demo()


def _github_sim(args: argparse.Namespace) -> int:
    from issuer.sim.serve import main_github_sim

    main_github_sim(args.port)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from issuer.keys import Keyring
    from issuer.store import RedisStore

    try:
        config = IssuerConfig.from_env(os.environ)
    except ConfigError as error:
        print(f"issuer: {error}", file=sys.stderr)
        return 2
    if not config.redis_url or config.key_encryption_key is None:
        print("issuer: ISSUER_REDIS_URL: keys are shared only through Redis", file=sys.stderr)
        return 2

    async def summary() -> list[dict[str, object]]:
        store = RedisStore.from_url(config.redis_url or "")
        try:
            assert config.key_encryption_key is not None
            keyring = await Keyring.load_or_create(store, config.key_encryption_key)
            return keyring.summary()
        finally:
            await store.close()

    for key in asyncio.run(summary()):
        print(f"{key['kid']}  {key['alg']}  {key['state']}  created {key['created']}")
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

    demo = commands.add_parser("demo", help="the whole flow on this machine, nothing configured")
    demo.set_defaults(handler=_demo)

    token = commands.add_parser("token", help="the workflow step: claim, print, exchange")
    token_cli.add_arguments(token)
    token.set_defaults(handler=token_cli.run)

    sim = commands.add_parser("github-sim", help="the GitHub simulator on its own")
    sim.add_argument("--port", type=int, default=8001)
    sim.set_defaults(handler=_github_sim)

    keys = commands.add_parser("keys", help="signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_list = key_commands.add_parser("list", help="kid, algorithm, state, created")
    key_list.set_defaults(handler=_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
