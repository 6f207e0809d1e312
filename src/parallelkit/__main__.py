"""``python -m parallelkit demo`` and ``python -m parallelkit info [--json]``."""

from __future__ import annotations

import argparse
import sys

from ._errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m parallelkit",
        description="parallelkit: parallel work made boring and safe.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    commands.add_parser(
        "demo",
        help="the same job on each backend, by changing one flag (a few seconds)",
        description="Run the same CPU-bound job on each backend, by changing one flag.",
    )
    info = commands.add_parser(
        "info",
        help="version, settings and where each came from, CPUs, start methods, extras",
        description=(
            "Show what parallelkit would use here: the version, Python, every setting "
            "with the source it came from, the CPUs this process may use, the start "
            "methods and the optional extras installed. A bad setting exits with 2."
        ),
    )
    info.add_argument("--json", action="store_true", help="print JSON, for programs")
    return parser


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import main

        main()
        return 0
    from ._info import main as info

    try:
        info(as_json=args.json)
    except ConfigError as exc:
        print(f"parallelkit: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
