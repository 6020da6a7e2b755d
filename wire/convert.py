"""Type-driven converters between registered dataclasses and CBOR-native values.

``object_codec(cls)`` builds, once per class from its type hints, an encoder (message ->
positional array) and a strict decoder (array -> message, raising ``Invalid`` with the path
of the bad field). The field types supported are listed in :mod:`wire.codec`. Entries, the
hot path of AppendEntries, have a hand-specialised converter.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, Final, NoReturn

from .messages import Entry, EntryKind
from .value import is_value

U64_MAX: Final = (1 << 64) - 1
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1


class _Signed:
    def __repr__(self) -> str:
        return "SIGNED"


SIGNED: Final = _Signed()
"""Marker for ``Annotated[int, SIGNED]``: a signed 64-bit field (plain ``int`` is unsigned)."""


class Invalid(Exception):
    """Internal: a value does not match its field type (becomes a WireError)."""


Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]
Conv = tuple[Encoder | None, Decoder]  # encoder (None: already CBOR-native), decoder


# Per-dataclass converters, also for nested dataclasses that have no type code.
_OBJ_CODECS: dict[type, tuple[Encoder, Decoder]] = {}


# --- value converters --------------------------------------------------------------------


def _describe(x: object) -> str:
    if type(x) is int:
        return "negative int" if x < 0 else f"int out of range ({x})"
    if type(x) is list:
        return f"array of {len(x)}"
    if type(x) is dict:
        return "map"
    return type(x).__name__


def _fail(expected: str, x: object) -> NoReturn:
    raise Invalid(f"expected {expected}, got {_describe(x)}")


def _dec_u64(x: Any) -> int:
    if type(x) is int and 0 <= x <= U64_MAX:
        return x
    _fail("unsigned int", x)


def _dec_i64(x: Any) -> int:
    if type(x) is int and _I64_MIN <= x <= _I64_MAX:
        return x
    _fail("signed 64-bit int", x)


def _exact(tp: type, name: str) -> Decoder:
    def dec(x: Any) -> Any:
        if type(x) is tp:
            return x
        _fail(name, x)

    return dec


def _dec_none(x: Any) -> None:
    if x is not None:
        _fail("null", x)


def _dec_float(x: Any) -> float:
    if type(x) is float:
        return x
    if type(x) is int:  # an int is a valid float field value; CBOR keeps it an int
        return float(x)
    _fail("float", x)


def _dec_native(x: Any) -> Any:
    """``Any`` fields: only plain CBOR values (cbor2 can produce nothing else once tags are
    rejected, except ``undefined`` and simple values, which are refused here)."""
    tx = type(x)
    if tx is int:
        if -(1 << 64) <= x <= U64_MAX:
            return x
    elif x is None or tx in (bool, float, bytes, str):
        return x
    elif tx is list:
        for item in x:
            _dec_native(item)
        return x
    elif tx is dict:
        for key, value in x.items():
            _dec_native(key)
            _dec_native(value)
        return x
    _fail("a native value", x)


def _dec_enum(cls: type[enum.IntEnum]) -> Decoder:
    members: dict[int, enum.IntEnum] = {int(m): m for m in cls}
    name = cls.__name__

    def dec(x: Any) -> Any:
        if type(x) is int:
            member = members.get(x)
            if member is not None:
                return member
            raise Invalid(f"{x} is not a {name}")
        _fail(name, x)

    return dec


def _seq(item_enc: Encoder | None, item_dec: Decoder, as_tuple: bool) -> Conv:
    def dec(x: Any) -> Any:
        if type(x) is not list:
            _fail("array", x)
        items = [item_dec(i) for i in x]
        return tuple(items) if as_tuple else items

    if item_enc is None:
        return None, dec
    enc = item_enc
    return (lambda v: [enc(i) for i in v]), dec


def _mapping(key_dec: Decoder, val: Conv) -> Conv:
    val_enc, val_dec = val

    def dec(x: Any) -> Any:
        if type(x) is not dict:
            _fail("map", x)
        return {key_dec(k): val_dec(v) for k, v in x.items()}

    if val_enc is None:
        return None, dec
    enc = val_enc
    return (lambda m: {k: enc(v) for k, v in m.items()}), dec


def _union(options: list[tuple[type | None, Encoder | None, Decoder]]) -> Conv:
    decs = [d for _, _, d in options]
    nullable = any(t is None for t, _, _ in options)

    def dec(x: Any) -> Any:
        if x is None and nullable:
            return None
        errors = []
        for d in decs:
            try:
                return d(x)
            except Invalid as e:
                errors.append(str(e))
        raise Invalid(" or ".join(errors))

    if all(e is None for _, e, _ in options):
        return None, dec
    by_type = {t: e for t, e, _ in options if t is not None and e is not None}
    return (lambda v: by_type[type(v)](v) if type(v) in by_type else v), dec


def _converter(tp: Any, owner: type) -> Conv:
    """(encoder or None for "already CBOR-native", decoder) for one field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        if args[0] is int and any(m is SIGNED for m in args[1:]):
            return None, _dec_i64
        return _converter(args[0], owner)
    if tp is int:
        return None, _dec_u64
    if tp is bool:
        return None, _dec_bool
    if tp is bytes:
        return None, _dec_bytes
    if tp is str:
        return None, _dec_str
    if tp is float:
        return None, _dec_float
    if tp is type(None) or tp is None:
        return None, _dec_none
    if tp is Any:
        return None, _dec_native
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return None, _dec_enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return object_codec(tp)
    if origin is typing.Union or origin is types.UnionType:
        options: list[tuple[type | None, Encoder | None, Decoder]] = []
        for arg in args:
            enc, dec = _converter(arg, owner)
            key = typing.get_origin(arg) or arg
            options.append((None if arg is type(None) else key, enc, dec))
        return _union(options)
    if origin is list and len(args) == 1:
        return _seq(*_converter(args[0], owner), as_tuple=False)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] is Entry:
            return _enc_entries, _dec_entries
        return _seq(*_converter(args[0], owner), as_tuple=True)
    if origin is dict and len(args) == 2:
        key_tp = args[0]
        if key_tp is str:
            key_dec = _exact(str, "str key")
        elif key_tp is bytes:
            key_dec = _exact(bytes, "bytes key")
        elif set(typing.get_args(key_tp)) == {str, bytes}:
            key_dec = _union(
                [(str, None, _exact(str, "str")), (bytes, None, _exact(bytes, "bytes"))]
            )[1]
        else:
            raise TypeError(f"{owner.__name__}: dict keys must be str or bytes, not {key_tp!r}")
        return _mapping(key_dec, _converter(args[1], owner))
    raise TypeError(f"{owner.__name__}: field type {tp!r} is not supported on the wire")


def object_codec(cls: type) -> tuple[Encoder, Decoder]:
    """Converters for a dataclass as a positional array of its fields (cached per class)."""
    cached = _OBJ_CODECS.get(cls)
    if cached is not None:
        return cached
    if not is_value(cls):
        raise TypeError(
            f"{cls.__name__} must be a frozen dataclass or a @value class to go on the wire"
        )
    # A self-referencing type would recurse forever here: resolve through the cache lazily.
    _OBJ_CODECS[cls] = (lambda v: _OBJ_CODECS[cls][0](v)), (lambda x: _OBJ_CODECS[cls][1](x))
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        names = [f.name for f in fields]
        convs = [_converter(hints[f.name], cls) for f in fields]
    except Exception:
        del _OBJ_CODECS[cls]
        raise
    codec = _buildobject_codec(cls, names, convs)
    _OBJ_CODECS[cls] = codec
    return codec


def _buildobject_codec(cls: type, names: list[str], convs: list[Conv]) -> tuple[Encoder, Decoder]:
    """A generated fast decoder and encoder (like ``dataclasses`` builds ``__init__``).

    The fast decoder checks simple fields inline and defers anything else, including every
    failure, to ``slow``, which walks the fields one by one to say exactly what is wrong.
    Only field indexes and the class's own field names go into the generated source.
    """
    n = len(names)
    cls_name = cls.__name__
    decs = [d for _, d in convs]
    labels = [f"{cls_name}.{name}" for name in names]

    def slow(x: Any) -> Any:
        if type(x) is not list:
            _fail(f"{cls_name} as an array", x)
        if len(x) != n:
            raise Invalid(f"{cls_name}: expected {n} fields, got {len(x)}")
        args = []
        for d, value, label in zip(decs, x, labels, strict=True):
            try:
                args.append(d(value))
            except Invalid as e:
                raise Invalid(f"{label}: {e}") from None
        try:
            return cls(*args)
        except (TypeError, ValueError) as e:  # a __post_init__ check of the class
            raise Invalid(f"{cls_name}: {e}") from None

    namespace: dict[str, Any] = {"cls": cls, "slow": slow, "U64": U64_MAX}
    checks, args = [], []
    for i, d in enumerate(decs):
        inline = _INLINE_CHECKS.get(d)
        if inline is not None:
            checks.append(inline.format(a=f"a{i}"))
            args.append(f"a{i}")
        else:
            namespace[f"d{i}"] = d
            args.append(f"d{i}(a{i})")
    unpack = f"        {''.join(f'a{i}, ' for i in range(n))}= x\n" if n else ""
    source = (
        "def dec(x):\n"
        f"    if type(x) is list and len(x) == {n}:\n"
        f"{unpack}"
        f"        if {' and '.join(checks) or 'True'}:\n"
        "            try:\n"
        f"                return cls({', '.join(args)})\n"
        "            except Exception:\n"
        "                pass\n"
        "    return slow(x)\n"
    )
    values = [
        f"v.{name}" if e is None else f"e{i}(v.{name})"
        for i, (name, (e, _)) in enumerate(zip(names, convs, strict=True))
    ]
    namespace.update({f"e{i}": e for i, (e, _) in enumerate(convs) if e is not None})
    source += f"def enc(v):\n    return ({''.join(f'{v}, ' for v in values)})\n"
    exec(source, namespace)  # source built from field indexes and names only
    return namespace["enc"], namespace["dec"]


_dec_bool: Final = _exact(bool, "bool")
_dec_bytes: Final = _exact(bytes, "bytes")
_dec_str: Final = _exact(str, "str")
# Decoders the generated fast path inlines as a condition on the value ``a``.
_INLINE_CHECKS: Final[dict[Decoder, str]] = {
    _dec_u64: "type({a}) is int and 0 <= {a} <= U64",
    _dec_bool: "type({a}) is bool",
    _dec_bytes: "type({a}) is bytes",
    _dec_str: "type({a}) is str",
}


# --- hand-specialised Entry handling (AppendEntries is the hot path) ----------------------

_KINDS: Final[dict[int, EntryKind]] = {int(k): k for k in EntryKind}


def _enc_entries(entries: tuple[Entry, ...]) -> list[tuple[int, int, int, bytes]]:
    return [(e.term, e.index, e.kind, e.data) for e in entries]


def _dec_entries(x: Any) -> tuple[Entry, ...]:
    if type(x) is not list:
        _fail("array of entries", x)
    out = []
    for i, e in enumerate(x):
        if type(e) is list and len(e) == 4:
            term, index, kind, data = e
            if (
                type(term) is int
                and type(index) is int
                and 0 <= term <= U64_MAX
                and 0 <= index <= U64_MAX
                and type(kind) is int
                and type(data) is bytes
                and kind in _KINDS
            ):
                out.append(Entry(term, index, _KINDS[kind], data))
                continue
        try:  # the generic decoder names exactly what is wrong
            out.append(_ENTRY_DECODER(e))
        except Invalid as err:
            raise Invalid(f"[{i}]: {err}") from None
    return tuple(out)


_ENTRY_DECODER: Final = object_codec(Entry)[1]
