"""What a builder's trusted side does for builds, in this process: a build that ends with an
image and leaves files of the build's ids in a sticky directory, its directory removed; a
build stopped at its time limit; exit 0 when all of it worked.
``python -m tests.deploy.one_build REGISTRY BASE SCRATCH_ROOT`` (run by
test_builder_privileges.py under a bounding set of capabilities)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

from issuer.builder.imagebuild import BuildRequest, ImageBuild, ImageSettings
from issuer.builder.sandbox import Confinement, Limits, Slot, id_blocks, id_lock_directory
from tests.builder.support import context


async def build(
    registry: str, base: str, scratch_root: Path, dockerfile: str, seconds: float
) -> dict[str, object]:
    scratch = Path(tempfile.mkdtemp(prefix="one-build-", dir=scratch_root))
    slot = Slot.acquire(id_lock_directory(), id_blocks())
    limits = Limits(512 << 20, 256, 1 << 30)
    confinement = Confinement(scratch.name, limits)
    settings = ImageSettings(registries=(registry,), insecure_registries=(registry,), limits=limits)
    try:
        async with httpx.AsyncClient() as http:
            image_build = ImageBuild(scratch, slot.block, settings, confinement, http)
            image_build.prepare(context({"Dockerfile": dockerfile}))
            last: dict[str, object] = {}
            async for line in image_build.run(BuildRequest(), seconds):
                last = line
                print(line, flush=True)
    finally:
        confinement.remove()
        slot.release()
    shutil.rmtree(scratch, ignore_errors=True)
    if await asyncio.to_thread(scratch.exists):
        last = {"error": "the builder's directory could not be removed"}
    return last


async def main(registry: str, base: str, scratch_root: Path) -> bool:
    made = await build(
        registry,
        base,
        scratch_root,
        f"FROM {base}\nRUN mkdir -m 1777 /tmp && touch /tmp/left && echo built > /built\n",
        120,
    )
    stopped = await build(registry, base, scratch_root, f"FROM {base}\nRUN sleep 600\n", 3)
    return "aux" in made and "BUILDER_BUILD_TIMEOUT" in str(stopped.get("error"))


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))) else 1)
