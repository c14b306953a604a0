"""``issuer builder serve`` and ``issuer trust add | list | remove | import``.

The ``trust`` commands reach the service at ``BUILDER_URL`` with ``BUILDER_ADMIN_TOKEN``.
Exit codes: 0 done; 1 the service refused (the reason is printed); 2 usage or configuration;
3 the service could not be reached or failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from issuer.builder.relationships import TTL_RANGE

EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


def _say_error(text: str) -> None:
    print(f"issuer: {text}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from issuer.builder.app import create_app
    from issuer.builder.config import BuilderConfig
    from issuer.builder.service import BuilderService
    from issuer.web.logs import configure_json_logging
    from issuer.web.metrics_listener import serve_metrics
    from issuer.web.settings import ConfigError

    try:
        config = BuilderConfig.from_env(os.environ)
        serve_metrics("BUILDER_METRICS_ADDRESS", config.metrics_address)
    except ConfigError as error:
        _say_error(str(error))
        return EXIT_USAGE
    configure_json_logging()  # one JSON object a line, as the issuer's
    audit = logging.getLogger("issuer.builder.audit")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # one JSON object per line
    audit.addHandler(handler)
    audit.propagate = False
    if config.admin_token is None:
        logging.getLogger("issuer.builder").warning(
            "BUILDER_ADMIN_TOKEN is unset: the admin API (issuer trust) is off"
        )
    app = create_app(lambda: BuilderService.start(config))
    uvicorn.run(
        app, host=args.host, port=args.port, access_log=False, log_level="info", log_config=None
    )
    return 0


def _client() -> Any:
    from issuer.builder.adminclient import AdminClient

    url = os.environ.get("BUILDER_URL", "").strip()
    token = os.environ.get("BUILDER_ADMIN_TOKEN", "").strip()
    if not url:
        _say_error("BUILDER_URL: is required: the builder service to manage")
        return None
    if not token:
        _say_error("BUILDER_ADMIN_TOKEN: is required for the admin API")
        return None
    return AdminClient(url, token)


def _admin_call(action: Any) -> int:
    from issuer.builder.adminclient import AdminError

    client = _client()
    if client is None:
        return EXIT_USAGE
    try:
        with client:
            action(client)
    except AdminError as error:
        _say_error(str(error))
        return EXIT_REFUSED if 400 <= error.status < 500 else EXIT_UNAVAILABLE
    return 0


def _claims(pairs: list[str]) -> dict[str, str] | None:
    claims: dict[str, str] = {}
    for pair in pairs:
        name, sep, pattern = pair.partition("=")
        if not sep or not name:
            _say_error(f"--claim {pair!r}: expected NAME=PATTERN")
            return None
        if name in claims:
            _say_error(f"--claim {name}: given twice")
            return None
        claims[name] = pattern
    return claims


def _summary(relationship: dict[str, Any]) -> str:
    from issuer.builder.relationships import parse_relationship

    parsed = parse_relationship(
        relationship, trusted_issuers=(relationship["issuer"],), stored=True
    )
    return parsed.summary()


def _trust_add(args: argparse.Namespace) -> int:
    claims = _claims(args.claim or [])
    if claims is None:
        return EXIT_USAGE
    fields: dict[str, Any] = {"project": args.project, "issuer": args.issuer}
    if args.repository is not None:
        fields["repository"] = args.repository
    if args.repository_pattern is not None:
        fields["repository_pattern"] = args.repository_pattern
    if args.event:
        fields["events"] = args.event
    if claims:
        fields["claims"] = claims
    if args.ttl is not None:
        fields["ttl"] = args.ttl
    if args.max_builders is not None:
        fields["max_builders"] = args.max_builders
    if args.push is not None:
        fields["push"] = args.push
    if args.egress:
        fields["egress"] = True
    return _admin_call(lambda client: print("added " + _summary(client.add(fields))))


def _trust_list(args: argparse.Namespace) -> int:
    def show(client: Any) -> None:
        relationships = client.list(args.project)
        if args.json:
            import json

            print(json.dumps(relationships, indent=2))
            return
        if not relationships:
            print(f"no trust relationships for project {args.project}")
        for relationship in relationships:
            print(_summary(relationship))

    return _admin_call(show)


def _trust_remove(args: argparse.Namespace) -> int:
    def remove(client: Any) -> None:
        client.remove(args.project, args.id)
        print(f"removed {args.id} from project {args.project}")

    return _admin_call(remove)


def _trust_import(args: argparse.Namespace) -> int:
    documents = _read_yaml(Path(args.file))
    if documents is None:
        return EXIT_USAGE

    def send(client: Any) -> None:
        for relationship in client.import_all(documents):
            print("added " + _summary(relationship))

    return _admin_call(send)


def _read_yaml(path: Path) -> list[dict[str, Any]] | None:
    """The file's documents, each a mapping; None after an error line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        loaded = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except OSError as error:
        _say_error(f"{path}: {error.strerror}")
        return None
    except UnicodeDecodeError:
        _say_error(f"{path}: not UTF-8 text")
        return None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        _say_error(f"{path}: not valid YAML{where}")
        return None
    if not loaded:
        _say_error(f"{path}: no trust relationship in it")
        return None
    for number, document in enumerate(loaded, 1):
        if not isinstance(document, dict):
            _say_error(f"{path}: document {number} is not a mapping of fields")
            return None
    return loaded


def register(commands: Any) -> None:
    """Add ``builder`` and ``trust`` to the ``issuer`` command's subcommands."""
    builder = commands.add_parser("builder", help="the builder service (the token's relying party)")
    builder_commands = builder.add_subparsers(dest="builder_command", required=True)
    serve = builder_commands.add_parser(
        "serve",
        help="run the builder service (BUILDER_* env)",
        description="Run the builder service, configured by BUILDER_* environment variables "
        "(README: Builder service; docs/builder.md). Metrics are served on "
        "BUILDER_METRICS_ADDRESS only.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8081, help="port to listen on (default 8081)")
    serve.set_defaults(handler=_serve)

    trust = commands.add_parser(
        "trust",
        help="trust relationships of the builder service (BUILDER_URL, BUILDER_ADMIN_TOKEN)",
    )
    trust_commands = trust.add_subparsers(dest="trust_command", required=True)
    add = trust_commands.add_parser("add", help="allow tokens to get builders for a project")
    add.add_argument("--project", required=True, help="the project (the exchange's audience)")
    add.add_argument("--issuer", required=True, help="one of BUILDER_TRUSTED_ISSUERS")
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--repository", help="OWNER/REPO, exactly")
    who.add_argument(
        "--repository-pattern", help="a regular expression matched against the whole name"
    )
    add.add_argument(
        "--event", action="append", help="an allowed event_name (repeatable; default pull_request)"
    )
    add.add_argument(
        "--claim",
        action="append",
        metavar="NAME=RE",
        help="the claim NAME must fully match RE (repeatable)",
    )
    add.add_argument(
        "--ttl", type=int, help=f"builder lifetime, seconds ({TTL_RANGE[0]}..{TTL_RANGE[1]})"
    )
    add.add_argument("--max-builders", type=int, help="live builders at once for this project")
    add.add_argument(
        "--push",
        metavar="HOST[:PORT]/PATH",
        help="push each built image to this registry repository (tagged from the token)",
    )
    add.add_argument(
        "--egress",
        action="store_true",
        help="let builds reach the internet (never the host's own or private addresses)",
    )
    add.set_defaults(handler=_trust_add)

    listing = trust_commands.add_parser("list", help="a project's trust relationships")
    listing.add_argument("--project", required=True)
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(handler=_trust_list)

    remove = trust_commands.add_parser("remove", help="remove a trust relationship")
    remove.add_argument("--project", required=True)
    remove.add_argument("id", help="the relationship's id (tr_...)")
    remove.set_defaults(handler=_trust_remove)

    imported = trust_commands.add_parser(
        "import", help="add the relationships of a YAML file (one per document), all or none"
    )
    imported.add_argument("file")
    imported.set_defaults(handler=_trust_import)
