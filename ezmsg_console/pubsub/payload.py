"""Data-plane payload codec: numpy arrays out-of-band, everything else msgpack, never pickle.

Theory of operation
-------------------
:func:`encode` turns a message into an :class:`Encoded`: ``header`` (the leading
bytes of the layout) plus ``buffers``, memoryviews of array data / large bytes,
*not copied yet*. :func:`write_into` copies each buffer exactly once into a
destination (a shared-memory slot); :func:`to_bytes` builds the same layout as
one ``bytes`` (TCP / inline). Layout, integers little-endian::

    0             u32 H     length of the metadata after the tag
    4             u8  tag   format, see below
    5             H bytes   metadata                (len(Encoded.header) == 5 + H)
    align64(5+H)            buffer 0   (zero padding before it)
    align64(end of 0)       buffer 1   ...          (Encoded.offsets)

Buffers start at multiples of 64 from the start of the layout, so a page-aligned
slot gives 64-byte aligned numpy views. Buffer lengths are derived from the
metadata and offsets never travel, so they cannot point into the header. The
message ends with its last buffer (at ``5 + H`` without buffers), at
``Encoded.nbytes``; :func:`decode` ignores bytes after that (a whole slot may
be passed). Tags:

* ``1`` bare ndarray, the fast path (no msgpack): metadata ``ARRAY_META`` =
  ``u8 n, n ASCII bytes of dtype.str ("<f4", ">c16", "<M8[ns]"...), u8 ndim,
  ndim x u64 shape``; one buffer of ``prod(shape) * itemsize`` bytes.
* ``2`` bare bytes under :data:`OOB_THRESHOLD`: the metadata *is* the bytes.
* ``3`` bare larger bytes: metadata ``u64 length``; one buffer.
* ``4`` anything else: ``u32 nbufs, nbufs x u64 buffer length, msgpack body``.
  In the body an array is ext 1 ``(u32 buffer index, ARRAY_META)``, large
  bytes are ext 2 ``(u32 buffer index)``; each buffer is referenced exactly
  once (no decode-time amplification). A dataclass is a map holding the
  *binary* key ``b"__type__"`` -> ``"module.QualName"`` (user maps may only
  have str keys, so it cannot collide) plus its ``init=True`` fields.

Decoding never builds arbitrary objects (no pickle, no hooks, no imports by
name; dataclasses are rebuilt only from the caller's ``types``), checks every
length against ``len(src)`` before allocating, accepts only canonical
non-object dtype strings, bounds nesting at :data:`MAX_DEPTH`, and raises
nothing but :class:`DecodeError`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import struct
from enum import Enum
from typing import Any, Mapping

import msgpack
import numpy as np

from ..protocol.errors import DecodeError, LocalProtocolError
from .msgtypes import type_name, types_for

__all__ = ["Encoded", "decode", "encode", "to_bytes", "type_name", "types_for", "write_into"]

ALIGN = 64  # every buffer starts at a multiple of this, counted from the start of the layout
MAX_DEPTH = 64  # most nested containers (lists, tuples, dicts, dataclasses) allowed
OOB_THRESHOLD = 1024  # bytes-like values at least this long travel out-of-band

TAG_NDARRAY, TAG_BYTES_INLINE, TAG_BYTES, TAG_MSGPACK = 1, 2, 3, 4
EXT_NDARRAY, EXT_BYTES = 1, 2
_TYPE_KEY = b"__type__"
_PREFIX = struct.Struct("<IB")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ZEROS = bytes(ALIGN)
_MAX_NDIM = 64
_SHAPES = tuple(struct.Struct(f"<{i}Q") for i in range(_MAX_NDIM + 1))
_HEADS = tuple(struct.Struct(f"<IBI{i}Q") for i in range(17))  # a tag-4 header with i buffers
_DTYPE_KINDS = "biufcmMSUV"
_DTYPE_RE = re.compile(r"[<>|][biufcmMSUV][0-9]{1,10}(\[[0-9]{0,9}[a-zA-Z]{1,2}\])?\Z")
_INLINE = frozenset({type(None), bool, int, float, str})
_SCALARS = _INLINE | {bytes}
_BYTES_LIKE = (bytes, bytearray, memoryview)


class Encoded:
    """An encoded message: leading bytes plus not-yet-copied out-of-band buffers."""

    __slots__ = ("header", "buffers", "offsets", "nbytes")

    def __init__(self, header: bytes, buffers: list[memoryview]) -> None:
        self.header = header
        self.buffers = buffers  # flat, C-contiguous, format "B"
        self.offsets: list[int] = []
        pos = len(header)
        for buf in buffers:
            pos = (pos + ALIGN - 1) & -ALIGN
            self.offsets.append(pos)
            pos += buf.nbytes
        self.nbytes = pos

    def __repr__(self) -> str:
        return f"Encoded(header={len(self.header)} B, buffers={len(self.buffers)}, nbytes={self.nbytes})"


# -- encoding -------------------------------------------------------------------


def _sendable(dtype: np.dtype) -> bool:
    """Whether arrays of ``dtype`` can travel: no objects, no structured fields, a known kind, a size."""
    return not (dtype.hasobject or dtype.fields is not None or dtype.kind not in _DTYPE_KINDS or dtype.itemsize == 0)


def _array_parts(arr: np.ndarray, index: int | None) -> tuple[bytes, memoryview]:
    """(metadata, flat byte view of the C-contiguous data); refuses arrays that cannot travel.

    The metadata is the complete tag-1 header when ``index`` is None, else an ext-1 payload.
    """
    if type(arr) is not np.ndarray:
        if isinstance(arr, np.ma.MaskedArray):
            raise LocalProtocolError("masked arrays cannot be sent (send data and mask separately)")
        arr = arr.view(np.ndarray)
    dt = arr.dtype
    if not _sendable(dt):
        raise LocalProtocolError(f"numpy arrays of dtype {dt!r} cannot be sent")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)  # one extra copy for strided / Fortran-ordered input
    meta = _array_meta(dt.str, arr.shape, index)
    if arr.size == 0:
        return meta, memoryview(b"")
    try:
        return meta, memoryview(arr).cast("B")  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python 3.12+ only
    except (TypeError, ValueError):  # dtypes without a buffer format (datetime64, ...)
        return meta, memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python 3.12+ only


@functools.lru_cache(maxsize=512)
def _array_meta(dtype_str: str, shape: tuple[int, ...], index: int | None) -> bytes:
    """ARRAY_META bytes (a pure function of its arguments, memoized: streams repeat
    the same dtype and shape message after message)."""
    ds = dtype_str.encode("ascii")
    n, ndim = len(ds), len(shape)
    if index is None:
        return struct.pack(f"<IBB{n}sB{ndim}Q", 2 + n + 8 * ndim, TAG_NDARRAY, n, ds, ndim, *shape)
    return struct.pack(f"<IB{n}sB{ndim}Q", index, n, ds, ndim, *shape)


@functools.lru_cache(maxsize=256)
def _checked_dtype(ds: str) -> np.dtype | None:
    """The dtype a received dtype string names, or None if it is not acceptable (memoized)."""
    try:
        dtype = np.dtype(ds) if _DTYPE_RE.match(ds) else None
    except Exception:  # noqa: BLE001 - numpy raises several types for bad dtype strings
        return None
    if dtype is None or dtype.str != ds or dtype.hasobject or dtype.itemsize == 0:
        return None
    return dtype


def _flat_bytes(obj: bytes | bytearray | memoryview) -> memoryview:
    """A flat format-"B" view of a bytes-like object (a copy only if it is not contiguous)."""
    data = memoryview(obj)
    if not data.c_contiguous or not data.nbytes:
        return memoryview(data.tobytes())
    return data if data.format == "B" and data.ndim == 1 else data.cast("B")


@functools.lru_cache(maxsize=512)
def _dataclass_plan(cls: type) -> tuple[str, tuple[str, ...]] | None:
    """(wire name, ``init=True`` field names) of a dataclass type, None for any other type
    (memoized: a stream sends the same few types message after message)."""
    if not dataclasses.is_dataclass(cls):
        return None
    return type_name(cls), tuple(f.name for f in dataclasses.fields(cls) if f.init)


@functools.lru_cache(maxsize=512)
def _array_ext(dtype: np.dtype, shape: tuple[int, ...], index: int) -> msgpack.ExtType | None:
    """The ext-1 reference to buffer ``index`` holding a C-contiguous array of ``dtype`` and
    ``shape``; None if the dtype cannot travel (the general path then says why). Memoized."""
    if not _sendable(dtype):
        return None
    return msgpack.ExtType(EXT_NDARRAY, _array_meta(dtype.str, shape, index))


class _Encoder:
    """Walks a message into msgpack-native data, collecting out-of-band buffers."""

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def prep(self, obj: Any, depth: int) -> Any:
        """msgpack-native form of ``obj``; ``depth`` counts the containers around it.
        The common types are tested first, by exact type (no isinstance chain)."""
        t = type(obj)
        if t in _INLINE:
            return obj
        if t is np.ndarray:
            index = len(self.buffers)
            ext = _array_ext(obj.dtype, obj.shape, index) if obj.flags.c_contiguous and obj.size else None
            if ext is not None:
                try:
                    buf = memoryview(obj).cast("B")
                except (TypeError, ValueError):  # no buffer format (datetime64, ...): the general path
                    pass
                else:
                    self.buffers.append(buf)
                    return ext
            meta, buf = _array_parts(obj, index)
            self.buffers.append(buf)
            return msgpack.ExtType(EXT_NDARRAY, meta)
        if t is list or t is tuple or t is dict:
            if depth >= MAX_DEPTH:
                raise LocalProtocolError(f"message nesting deeper than {MAX_DEPTH} levels")
            depth += 1
            if t is dict:
                out: dict[Any, Any] = {}
                for k, v in obj.items():
                    if type(k) is not str:
                        if not isinstance(k, str):
                            raise LocalProtocolError(f"dict keys must be str, not {type(k).__name__}")
                        k = str(k)
                    out[k] = v if type(v) in _INLINE else self.prep(v, depth)
                return out
            return [v if type(v) in _INLINE else self.prep(v, depth) for v in obj]
        if isinstance(obj, _BYTES_LIKE):
            data = _flat_bytes(obj)
            if data.nbytes < OOB_THRESHOLD:
                return obj if t is bytes else data.tobytes()
            self.buffers.append(data)
            return msgpack.ExtType(EXT_BYTES, _U32.pack(len(self.buffers) - 1))
        plan = _dataclass_plan(t)  # type: ignore[arg-type]  # types are hashable; typeshed says type[Any] may not be
        if plan is not None:
            if depth >= MAX_DEPTH:
                raise LocalProtocolError(f"message nesting deeper than {MAX_DEPTH} levels")
            depth += 1
            name, fields = plan
            out = {_TYPE_KEY: name}
            for field in fields:
                v = getattr(obj, field)
                out[field] = v if type(v) in _INLINE else self.prep(v, depth)
            return out
        if isinstance(obj, np.ndarray):
            meta, buf = _array_parts(obj, len(self.buffers))
            self.buffers.append(buf)
            return msgpack.ExtType(EXT_NDARRAY, meta)
        if isinstance(obj, Enum):
            return self.prep(obj.value, depth)
        if isinstance(obj, np.generic):
            value = obj.item()
            if isinstance(value, np.generic):
                raise LocalProtocolError(f"numpy scalar {t.__name__} has no exact Python equivalent")
            return self.prep(value, depth)
        for base in (bool, int, float, str):  # subclasses (not Enums) travel as the base type
            if isinstance(obj, base):
                return base(obj)
        raise LocalProtocolError(f"cannot encode a {t.__module__}.{t.__qualname__} in a message")


def encode(msg: Any) -> Encoded:
    """Encode a message; nothing is copied out of arrays / large bytes until :func:`write_into`.

    Raises LocalProtocolError for anything that cannot travel (object dtypes,
    sets, arbitrary objects, ints outside 64 bits, nesting over MAX_DEPTH).
    """
    if isinstance(msg, np.ndarray):
        header, buf = _array_parts(msg, None)
        return Encoded(header, [buf])
    if isinstance(msg, _BYTES_LIKE):
        data = _flat_bytes(msg)
        if data.nbytes >= OOB_THRESHOLD:
            return Encoded(_PREFIX.pack(8, TAG_BYTES) + _U64.pack(data.nbytes), [data])
        raw = msg if type(msg) is bytes else data.tobytes()
        return Encoded(_PREFIX.pack(len(raw), TAG_BYTES_INLINE) + raw, [])
    enc = _Encoder()
    tree = enc.prep(msg, 0)
    try:
        body = msgpack.packb(tree, use_bin_type=True, datetime=False)
    except (OverflowError, ValueError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode message: {exc}") from None
    lens = [b.nbytes for b in enc.buffers]
    meta_len = 4 + 8 * len(lens) + len(body)
    if meta_len >= 2**32:
        raise LocalProtocolError("message metadata over 4 GiB; send large data as arrays")
    head = (_HEADS[len(lens)] if len(lens) < len(_HEADS) else struct.Struct(f"<IBI{len(lens)}Q")).pack(
        meta_len, TAG_MSGPACK, len(lens), *lens)
    return Encoded(head + body, enc.buffers)


def write_into(enc: Encoded, dest: memoryview) -> int:
    """Write the layout of ``enc`` into ``dest[:enc.nbytes]``, one copy per buffer; return enc.nbytes.

    Padding is zeroed. Raises LocalProtocolError if ``dest`` is read-only or too small.
    """
    n = enc.nbytes
    if type(dest) is not memoryview:
        dest = memoryview(dest)
    if dest.format != "B" or dest.ndim != 1:
        dest = dest.cast("B")
    if dest.readonly or dest.nbytes < n:
        raise LocalProtocolError(f"destination must be writable and at least {n} bytes, got {dest.nbytes}")
    pos = len(enc.header)
    dest[:pos] = enc.header
    for buf, off in zip(enc.buffers, enc.offsets):
        dest[pos:off] = _ZEROS[: off - pos]
        pos = off + buf.nbytes
        dest[off:pos] = buf
    return n


def to_bytes(enc: Encoded) -> bytes:
    """The layout of ``enc`` as one bytes object (the bytes :func:`write_into` writes)."""
    if not enc.buffers:
        return enc.header
    parts: list[Any] = [enc.header]
    pos = len(enc.header)
    for buf, off in zip(enc.buffers, enc.offsets):
        parts += (_ZEROS[: off - pos], buf)
        pos = off + buf.nbytes
    return b"".join(parts)


# -- decoding -------------------------------------------------------------------


def _parse_meta(mv: memoryview, pos: int, end: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """Parse ARRAY_META in ``mv[pos:end]``: (dtype, shape, data byte length, position after it)."""
    if pos >= end:
        raise DecodeError("truncated array metadata")
    n = mv[pos]
    if pos + n + 2 > end:
        raise DecodeError("truncated array dtype")
    ds = str(mv[pos + 1 : pos + 1 + n], "ascii", "replace")
    ndim = mv[pos + 1 + n]
    pos += n + 2
    if ndim > _MAX_NDIM or pos + 8 * ndim > end:
        raise DecodeError("bad or truncated array shape")
    shape = _SHAPES[ndim].unpack_from(mv, pos)
    dtype = _checked_dtype(ds)
    if dtype is None:
        raise DecodeError(f"bad array dtype {ds!r}")
    size = dtype.itemsize
    for dim in shape:
        size *= dim  # a Python int: absurd shapes fail the length checks, not an allocation
    return dtype, shape, size, pos + 8 * ndim


@functools.lru_cache(maxsize=512)
def _ext_array_meta(data: bytes) -> tuple[int, np.dtype, tuple[int, ...], int]:
    """(buffer index, dtype, shape, data byte length) of an ext-1 payload (memoized: only
    well-formed metadata, at most a few hundred bytes, is ever cached; bad input raises)."""
    if len(data) < 5:
        raise DecodeError("truncated array reference")
    (idx,) = _U32.unpack_from(data)
    dtype, shape, nbytes, end = _parse_meta(memoryview(data), 4, len(data))
    if end != len(data):
        raise DecodeError("array metadata does not match its buffer")
    return idx, dtype, shape, nbytes


def _make_array(mv: memoryview, off: int, dtype: np.dtype, shape: tuple[int, ...], nbytes: int,
                copy: bool) -> np.ndarray:
    """An array over ``mv[off:off+nbytes]`` (bounds-checked): a copy, or a view (read-only if mv is)."""
    try:
        arr = np.frombuffer(mv, dtype, nbytes // dtype.itemsize, off)
        if len(shape) != 1:
            arr = arr.reshape(shape)
    except (ValueError, TypeError, MemoryError) as exc:
        raise DecodeError(f"bad array: {exc}") from None
    return arr.copy() if copy else arr


class _Decoder:
    """Resolves a msgpack tree: buffer refs to arrays/bytes, dataclass maps, depth and key checks."""

    __slots__ = ("mv", "lens", "offsets", "used", "copy", "types")

    def __init__(self, mv: memoryview, start: int, end: int, copy: bool,
                 types: Mapping[str, type] | None) -> None:
        """Read the buffer table at ``mv[start:end]``; check every buffer lies inside ``mv``."""
        if end - start < 4:
            raise DecodeError("truncated buffer table")
        (nbufs,) = _U32.unpack_from(mv, start)
        if 4 + 8 * nbufs > end - start:
            raise DecodeError("buffer table longer than header")
        self.lens = (_SHAPES[nbufs] if nbufs <= _MAX_NDIM else struct.Struct(f"<{nbufs}Q")).unpack_from(
            mv, start + 4)
        self.offsets: list[int] = []
        pos = end
        for length in self.lens:
            pos = (pos + ALIGN - 1) & -ALIGN
            self.offsets.append(pos)
            pos += length
            if pos > mv.nbytes:
                raise DecodeError("buffer extends past the end of the payload")
        self.mv, self.copy, self.types = mv, copy, types
        self.used = [False] * nbufs

    def _buffer(self, data: bytes) -> tuple[int, int]:
        (idx,) = _U32.unpack_from(data) if len(data) >= 4 else (-1,)
        return self._take(idx)

    def _take(self, idx: int) -> tuple[int, int]:
        """(offset, length) of buffer ``idx``, which must exist and not have been used yet."""
        if not 0 <= idx < len(self.lens) or self.used[idx]:
            raise DecodeError(f"buffer reference {idx} missing, out of range or used twice")
        self.used[idx] = True
        return self.offsets[idx], self.lens[idx]

    def build(self, obj: Any, depth: int) -> Any:
        """The message value for a msgpack value; ``depth`` counts the containers around it."""
        t = type(obj)
        if t is list or t is dict:
            if depth >= MAX_DEPTH:
                raise DecodeError(f"message nesting deeper than {MAX_DEPTH} levels")
            depth += 1
            if t is list:
                for i, v in enumerate(obj):
                    if type(v) not in _SCALARS:
                        obj[i] = self.build(v, depth)
                return obj
            name = None
            for k, v in obj.items():
                if type(k) is not str:
                    if k != _TYPE_KEY or type(v) is not str:
                        raise DecodeError("map keys must be str")
                    name = v
                elif type(v) not in _SCALARS:
                    obj[k] = self.build(v, depth)
            if name is None:
                return obj
            del obj[_TYPE_KEY]
            cls = self.types.get(name) if self.types else None
            if cls is None:
                return {"__type__": name, **obj}
            try:
                converters = getattr(self.types, "converters", None)
                for key, convert in (converters.get(name, {}) if converters else {}).items():
                    if key in obj:
                        obj[key] = convert(obj[key])
                return cls(**obj)
            except Exception as exc:  # noqa: BLE001 - a mismatched payload must surface as DecodeError
                raise DecodeError(f"cannot rebuild {name}: {type(exc).__name__}: {exc}") from None
        if t is msgpack.ExtType:
            if obj.code == EXT_BYTES and len(obj.data) == 4:
                off, n = self._buffer(obj.data)
                return bytes(self.mv[off : off + n])
            if obj.code == EXT_NDARRAY:
                idx, dtype, shape, nbytes = _ext_array_meta(obj.data)
                off, n = self._take(idx)
                if nbytes != n:
                    raise DecodeError("array metadata does not match its buffer")
                return _make_array(self.mv, off, dtype, shape, nbytes, self.copy)
            raise DecodeError(f"unknown or malformed ext type {obj.code}")
        if t in _SCALARS:
            return obj
        raise DecodeError(f"unexpected {t.__name__} in payload")


def decode(src: bytes | bytearray | memoryview, *, copy: bool = True,
           types: Mapping[str, type] | None = None) -> Any:
    """Decode a message laid out by :func:`write_into` / :func:`to_bytes`; trailing bytes are ignored.

    ``copy=True`` gives independent writable arrays; ``copy=False`` gives
    read-only views into ``src``, valid only while ``src`` is (and not
    reused). Dataclasses named in ``types`` are rebuilt with ``cls(**fields)``,
    others become dicts with a ``"__type__"`` key. Raises only DecodeError.
    """
    try:
        mv = src if type(src) is memoryview else memoryview(src)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        if not copy:
            mv = mv.toreadonly()  # so every numpy view made from it is read-only
        n = mv.nbytes
        if n < 5:
            raise DecodeError("payload shorter than its prefix")
        meta_len, tag = _PREFIX.unpack_from(mv)
        end = 5 + meta_len
        first = (end + ALIGN - 1) & -ALIGN  # where buffer 0 starts
        if end > n:
            raise DecodeError("header longer than payload")
        if tag == TAG_NDARRAY:
            dtype, shape, nbytes, pos = _parse_meta(mv, 5, end)
            if pos != end or first + nbytes > n:
                raise DecodeError("array header or data length mismatch")
            return _make_array(mv, first, dtype, shape, nbytes, copy)
        if tag == TAG_BYTES_INLINE:
            return bytes(mv[5:end])
        if tag == TAG_BYTES:
            (length,) = _U64.unpack_from(mv, 5)
            if meta_len != 8 or first + length > n:
                raise DecodeError("bad bytes header or bytes longer than payload")
            return bytes(mv[first : first + length])
        if tag != TAG_MSGPACK:
            raise DecodeError(f"unknown payload format tag {tag}")
        dec = _Decoder(mv, 5, end, copy, types)
        body = mv[9 + 8 * len(dec.lens) : end]
        tree = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True, timestamp=0)
        out = dec.build(tree, 0)
        if not all(dec.used):
            raise DecodeError("payload has unreferenced buffers")
        return out
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input must only ever raise DecodeError
        raise DecodeError(f"malformed payload: {type(exc).__name__}: {exc}") from None
