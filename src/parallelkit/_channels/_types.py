"""Type variables and aliases shared by the channel modules.

The item type of a channel defaults to ``Any`` for type checkers (PEP 696),
so ``a, b = parallelkit.Pipe()`` type-checks like ``multiprocessing.Pipe()``
does, and ``parallelkit.Pipe[str]()`` or an annotation makes it precise. At
run time the variables are plain ``TypeVar`` objects, which every supported
Python accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

__all__ = ("FloatCode", "IntCode", "T", "T_co", "T_contra")

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    T = TypeVar("T", default=Any)
    T_co = TypeVar("T_co", covariant=True, default=Any)
    T_contra = TypeVar("T_contra", contravariant=True, default=Any)
else:
    from typing import TypeVar

    T = TypeVar("T")
    T_co = TypeVar("T_co", covariant=True)
    T_contra = TypeVar("T_contra", contravariant=True)

#: ``array``-module typecodes whose items are Python ints.
IntCode = Literal["b", "B", "h", "H", "i", "I", "l", "L", "q", "Q"]
#: ``array``-module typecodes whose items are Python floats.
FloatCode = Literal["f", "d"]
