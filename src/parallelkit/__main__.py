"""``python -m parallelkit demo``."""

from __future__ import annotations

import sys


def _main(argv: list[str]) -> int:
    if argv[:1] != ["demo"]:
        print("usage: python -m parallelkit demo", file=sys.stderr)
        return 2
    from ._demo import main

    main()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
