"""The builder service for the sandbox attack tests: ``issuer builder serve`` exactly (its
BUILDER_* environment, its app), with one test-only switch, ``--no-sandbox``, that runs each
build as the service itself (no namespaces, no id mapping, no limits) to show every attack
succeeding without the walls. It lives under tests/: no setting of the service reaches it."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import uvicorn

from issuer.builder.app import create_app
from issuer.builder.backend import BuilderBackend, OnStopped
from issuer.builder.config import BuilderConfig
from issuer.builder.process import BuilderProcesses
from issuer.builder.service import BuilderService, image_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-sandbox", action="store_true")
    args = parser.parse_args()
    config = BuilderConfig.from_env(os.environ)
    images = dataclasses.replace(image_settings(config), sandbox=not args.no_sandbox)

    def backend(scratch_root: Path, on_stopped: OnStopped) -> BuilderBackend:
        return BuilderProcesses(
            scratch_root, on_stopped, images, registry_auth_file=config.registry_auth_file
        )

    app = create_app(lambda: BuilderService.start(config, backend_factory=backend))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
