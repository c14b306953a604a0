"""Join cgroups, set resource limits, then become the given command.

Run by the builder as ``python -I -S confine.py [--join FILE]... [--rlimit NAME=N]... -- ARGV``
in front of every sandboxed command, so that the limits hold from the command's very first
instruction: a process started first and moved into its cgroup afterwards could fork in
between and leave children outside. Standard library only (it runs without site-packages).
"""

from __future__ import annotations

import os
import resource
import sys

RLIMITS = {
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "as": resource.RLIMIT_AS,
    "core": resource.RLIMIT_CORE,
    "nofile": resource.RLIMIT_NOFILE,
}


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("confine: usage: [--join FILE]... [--rlimit NAME=N]... -- ARGV", file=sys.stderr)
        return 2
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    if not command:
        print("confine: no command", file=sys.stderr)
        return 2
    pairs = list(zip(options[::2], options[1::2], strict=False))
    for flag, value in pairs:
        if flag == "--join":
            with open(value, "w", encoding="ascii") as procs:
                procs.write(str(os.getpid()))
        elif flag == "--rlimit":
            name, _, number = value.partition("=")
            limit = int(number)
            resource.setrlimit(RLIMITS[name], (limit, limit))
        else:
            print(f"confine: unknown option {flag}", file=sys.stderr)
            return 2
    os.execvp(command[0], command)  # noqa: S606  (no shell: the argv as given)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
