"""How one item of a chunk becomes one call: the faces choose, the workers apply.

Every worker loads this module (see :mod:`parallelkit._worker`), so it
imports nothing.
"""

from typing import Final

__all__ = ("CALL", "MAP", "STAR")

MAP: Final = 0  # fn(item)
STAR: Final = 1  # fn(*item)
CALL: Final = 2  # fn(*args, **kwargs), item == (args, kwargs)
