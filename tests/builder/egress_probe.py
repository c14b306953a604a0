"""One command in a network namespace given the builder's uplink and egress rules
(:class:`issuer.builder.egress.Uplink`), as a build's step gets them. Run as
``python -m tests.builder.egress_probe COMMAND...`` (root), typically inside a private mount
namespace whose ``/etc/resolv.conf`` names a test resolver; prints the command's output."""

from __future__ import annotations

import asyncio
import sys

from issuer.builder.egress import Uplink


async def probe(command: list[str]) -> str:
    holder = await asyncio.create_subprocess_exec(
        *("unshare", "--net", "sh", "-c"),
        "echo ready && exec sleep 120",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"ready"
        uplink = await Uplink.start(holder.pid)
        try:
            namespaces = f"/proc/{holder.pid}/ns"
            run = await asyncio.create_subprocess_exec(
                *("nsenter", f"--net={namespaces}/net", "--"),
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await run.communicate()
            return output.decode(errors="replace")
        finally:
            await uplink.close()
    finally:
        holder.kill()
        await holder.wait()


if __name__ == "__main__":
    print(asyncio.run(probe(sys.argv[1:])), end="")
