"""The C types behind Value and Array: naming them, shipping them, copying them.

- :func:`element_type` turns what the user passed (``"i"``, ``int``,
  ``ctypes.c_bool``, a ``Structure`` subclass) into one ctypes type, and
  refuses pointers (an address means nothing in another process).
- :func:`type_ref` / :func:`load_type` carry that type to another process.
  ctypes types cannot be pickled by value (cloudpickle refuses their field
  descriptors), so a Structure is sent as its import path *and* its layout:
  the receiver uses the class it can import when the layout matches (so
  ``isinstance`` and methods work) and otherwise rebuilds an equivalent class
  from the layout (a ``Structure`` defined in ``__main__`` under forkserver).
- :func:`frozen_copy` gives a Structure read as a whole value
  (``Value(Point).value``) as a copy that refuses attribute assignment, so
  ``v.value.x = 1`` fails loudly instead of silently changing nothing. (An
  Array's Structure elements are live, as in ``multiprocessing``.)
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import sys
from typing import Any, Final

__all__ = (
    "class_of",
    "describe_format",
    "element_type",
    "frozen_copy",
    "is_struct",
    "load_type",
    "type_ref",
    "typecode_of",
)

_TYPECODES: Final[dict[str, Any]] = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
    "?": ctypes.c_bool,
}
#: Python types accepted in place of a typecode.
_PYTYPES: Final[dict[type, Any]] = {
    bool: ctypes.c_bool,
    int: ctypes.c_int64,
    float: ctypes.c_double,
    bytes: ctypes.c_char,
    str: ctypes.c_wchar,
}
_POINTER_CODES: Final = frozenset("zZPOX")
_SIMPLE: Final[type] = ctypes._SimpleCData  # pyright: ignore[reportPrivateUsage]
_STRUCT_BASES: Final = (ctypes.Structure, ctypes.Union)


def is_struct(ctype: Any) -> bool:
    """Whether ``ctype`` is a Structure or Union (read as a whole object, not ``.value``)."""
    return isinstance(ctype, type) and issubclass(ctype, _STRUCT_BASES)


def element_type(typecode_or_type: object, what: str) -> Any:
    """Return the ctypes type for a typecode, Python type, ctypes type or Structure.

    Args:
        typecode_or_type: What the user passed.
        what: ``"Value"`` or ``"Array"``, for the error message.

    Returns:
        A ctypes type.

    Raises:
        TypeError: It is not one of those, or it is (or contains) a pointer.
    """
    if isinstance(typecode_or_type, str):
        ctype = _TYPECODES.get(typecode_or_type)
        if ctype is None:
            raise TypeError(
                f"unknown typecode {typecode_or_type!r} for {what}; expected one of "
                f"{''.join(sorted(_TYPECODES))!r}, a ctypes type, a Structure, int, float or bool"
            )
        return ctype
    tp: Any = typecode_or_type
    if isinstance(tp, type):
        if tp in _PYTYPES:
            return _PYTYPES[tp]
        if issubclass(tp, _SIMPLE):
            if getattr(tp, "_type_", "") in _POINTER_CODES:
                raise TypeError(_pointer_message(tp, what))
            return tp
        if is_struct(tp):
            _check_fields(tp, what)
            return tp
    raise TypeError(
        f"{what} takes a typecode such as 'i' or 'd', int, float, bool, a ctypes type such as "
        f"ctypes.c_double, or a ctypes Structure; got {typecode_or_type!r}"
    )


def _pointer_message(tp: object, what: str) -> str:
    return (
        f"{what} cannot hold {getattr(tp, '__name__', tp)}: it is a pointer, and an address "
        "means nothing in another process; use a char array ('c') for bytes"
    )


def _check_fields(struct: Any, what: str) -> None:
    for field in getattr(struct, "_fields_", ()):
        _check_member(field[1], what)


def _check_member(tp: Any, what: str) -> None:
    if is_struct(tp):
        _check_fields(tp, what)
    elif issubclass(tp, ctypes.Array):
        _check_member(tp._type_, what)
    elif not issubclass(tp, _SIMPLE) or getattr(tp, "_type_", "") in _POINTER_CODES:
        raise TypeError(_pointer_message(tp, what))


def typecode_of(ctype: Any) -> str:
    """A short name for ``repr``: the typecode, or the class name."""
    for code, known in _TYPECODES.items():
        if known is ctype:
            return code
    return str(getattr(ctype, "__qualname__", ctype))


# -- carrying a type to another process ---------------------------------------------------


def type_ref(ctype: Any) -> object:
    """A picklable reference to ``ctype`` that :func:`load_type` resolves anywhere.

    Args:
        ctype: A type accepted by :func:`element_type`.

    Returns:
        A typecode string, or a nested tuple describing a Structure.
    """
    for code, known in _TYPECODES.items():
        if known is ctype:
            return code
    return _describe(ctype)


def _describe(tp: Any) -> object:
    if is_struct(tp):
        base: Any = next(b for b in tp.__mro__[1:] if getattr(ctypes, b.__name__, None) is b)
        fields = tuple(
            (f[0], _describe(f[1]), *f[2:])
            for f in tp._fields_  # bit-field widths, if any
        )
        extra = tuple(
            (k, _hashable(getattr(tp, k))) for k in ("_pack_", "_anonymous_") if k in tp.__dict__
        )
        return ("struct", tp.__module__, tp.__qualname__, base.__name__, fields, extra)
    if issubclass(tp, ctypes.Array):
        return ("array", _describe(tp._type_), tp._length_)
    return ("simple", tp.__name__)


def _hashable(value: object) -> object:
    if isinstance(value, (list, tuple)):
        items: list[object] = list(value)  # pyright: ignore[reportUnknownArgumentType]
        return tuple(items)
    return value


def class_of(obj: object) -> Any:
    """``type(obj)``, typed loosely: ctypes classes are built at run time."""
    return type(obj)


_rebuilt: dict[object, Any] = {}


def load_type(ref: object) -> Any:
    """Resolve what :func:`type_ref` made.

    Args:
        ref: The reference.

    Returns:
        The ctypes type.
    """
    if isinstance(ref, str):
        return _TYPECODES[ref]
    found = _rebuilt.get(ref)
    if found is None:
        found = _rebuilt[ref] = _resolve(ref)
    return found


def _resolve(desc: Any) -> Any:
    kind = desc[0]
    if kind == "simple":
        return getattr(ctypes, desc[1])
    if kind == "array":
        return _resolve(desc[1]) * desc[2]
    _, module, qualname, base_name, fields, extra = desc
    built_fields = [(f[0], _resolve(f[1]), *f[2:]) for f in fields]
    imported = _import(module, qualname)
    if imported is not None and _same_layout(imported, built_fields):
        return imported
    namespace: dict[str, Any] = dict(extra)
    namespace["_fields_"] = built_fields
    namespace["__module__"] = module
    namespace["__qualname__"] = qualname
    base = getattr(ctypes, base_name)
    return type(base)(qualname.rsplit(".", 1)[-1], (base,), namespace)


def _import(module: str, qualname: str) -> Any:
    candidates = [sys.modules.get(module)]
    if module == "__main__":
        candidates.append(sys.modules.get("__mp_main__"))
    else:
        with contextlib.suppress(Exception):  # not importable here: the layout is enough
            candidates.append(importlib.import_module(module))
    for mod in candidates:
        obj: Any = mod
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and is_struct(obj):
            return obj
    return None


def _same_layout(tp: Any, fields: list[Any]) -> bool:
    own = getattr(tp, "_fields_", None)
    if own is None or len(own) != len(fields):
        return False
    for mine, theirs in zip(own, fields, strict=True):
        if mine[0] != theirs[0] or ctypes.sizeof(mine[1]) != ctypes.sizeof(theirs[1]):
            return False
    return True


# -- structures read outside the lock -----------------------------------------------------

_frozen: dict[type, type] = {}


def _refuse(self: object, name: str, value: object) -> None:
    raise AttributeError(
        f"this {type(self).__mro__[1].__name__} is a copy read outside the lock, so setting "
        f"{name!r} on it would change nothing shared; modify the shared one with "
        "'with shared.locked() as cell:', or assign a whole new value (v.value = ..., "
        "v.set(...), v.update(...))"
    )


def _thaw(tp: Any, data: bytes) -> object:
    obj: object = tp.from_buffer_copy(data)
    return obj


def _reduce_frozen(self: Any) -> tuple[object, ...]:
    return (_thaw, (type(self).__mro__[1], bytes(memoryview(self).cast("B"))))


def frozen_copy(struct: Any) -> Any:
    """Copy a Structure into an instance of a subclass that refuses assignment."""
    tp = class_of(struct)
    frozen: Any = _frozen.get(tp)
    if frozen is None:
        frozen = _frozen[tp] = type(tp)(
            tp.__name__,
            (tp,),
            {
                "__slots__": (),
                "__setattr__": _refuse,
                "__reduce__": _reduce_frozen,
                "__module__": tp.__module__,
                "__qualname__": tp.__qualname__,
            },
        )
    return frozen.from_buffer_copy(struct)


# -- buffer formats -------------------------------------------------------------------------

_KINDS: Final = {
    **dict.fromkeys("bhilqn", "int"),
    **dict.fromkeys("BHILQN", "uint"),
    **dict.fromkeys("efd", "float"),
    "?": "bool",
    "c": "char",
    "u": "wchar",
    "w": "wchar",
}


def describe_format(fmt: str, itemsize: int) -> tuple[str, int]:
    """Normalize a buffer format: ``'<q'`` and ``'l'`` are both ``("int", 8)``."""
    code = fmt.lstrip("@=<>!")
    if code.startswith("T{") or code.startswith("{"):
        return ("struct", itemsize)
    return (_KINDS.get(code, code), itemsize)
