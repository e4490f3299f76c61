"""The one msgpack codec: fixed options, explicit ext types, never pickle.

Decoding never builds arbitrary objects: there is no ``object_hook`` and the
only ext type understood is :data:`EXT_NDARRAY`, a numpy array sent as
``(dtype string, shape, raw bytes)``. Object dtypes are refused in both
directions. Map keys must be strings; nesting is bounded by the
msgpack unpacker's own stack limit. Any failure is a :class:`DecodeError`.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Iterator

import msgpack

from .errors import DecodeError, LocalProtocolError

EXT_NDARRAY = 1


def _np() -> Any:
    import numpy  # imported at call time: numpy only loads when an array is seen

    return numpy


def _default(obj: Any) -> Any:
    np = _np()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise LocalProtocolError("numpy arrays of dtype=object cannot be sent")
        arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)  # keeps 0-d shapes
        header = msgpack.packb([arr.dtype.str, list(arr.shape)], use_bin_type=True)
        return msgpack.ExtType(EXT_NDARRAY, header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise LocalProtocolError(f"cannot encode a {type(obj).__name__} in a message")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != EXT_NDARRAY:
        raise DecodeError(f"unknown msgpack ext type {code}")
    np = _np()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(data)
    try:
        dtype_str, shape = unpacker.unpack()
    except Exception as exc:  # noqa: BLE001 - any malformed header is a decode error
        raise DecodeError(f"malformed ndarray header: {exc}") from None
    offset = unpacker.tell()
    if not isinstance(dtype_str, str) or not isinstance(shape, list):
        raise DecodeError("malformed ndarray header")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DecodeError("ndarray shape must be non-negative integers")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError:
        raise DecodeError(f"unknown ndarray dtype {dtype_str!r}") from None
    if dtype.hasobject:
        raise DecodeError("ndarray of dtype=object refused")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(data) - offset:
        raise DecodeError("ndarray byte length does not match dtype and shape")
    return np.frombuffer(data, dtype=dtype, offset=offset, count=count).reshape(shape)


def packb(obj: Any) -> bytes:
    """Encode plain data (dict, list, str, bytes, numbers, None, ndarray)."""
    try:
        data: bytes = msgpack.packb(obj, use_bin_type=True, default=_default, datetime=False)
        return data
    except LocalProtocolError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode message: {exc}") from None


@contextlib.contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (if it is on and ``pause``): turning a big
    message into objects, or objects into one, makes hundreds of thousands of containers, and the
    collections they would trigger (each walking every object of the process) cost more than the
    work itself. Nothing is lost: the collector runs again afterwards."""
    paused = pause and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def unpackb(data: bytes) -> Any:
    """Decode one msgpack value; raise DecodeError for anything malformed.

    The frame decoder has already bounded ``data``, which bounds every string,
    array and map inside it.
    """
    with gc_paused(len(data) >= GC_PAUSE_BYTES):
        return _unpackb(data)


GC_PAUSE_BYTES = 64 * 1024
"""Bodies at least this long are decoded with the garbage collector paused (see :func:`gc_paused`)."""

BOUNDED_BYTES = 64 * 1024
"""Message bodies at least this long are decoded by :func:`unpack_message` with budgets."""
BYTES_PER_CONTAINER = 48
BYTES_PER_ELEMENT = 4
BYTES_PER_ITEM = 16
"""The densest big message accepted: one container (list or map) per 48 bytes and one element (a
list item, a map key or value) per 4 bytes, beyond a base of 4,096 containers and 65,536 elements.
Real messages are far sparser (the metadata of 10,000 components: a container per 63 bytes, an
element per 7.7), while a decode bomb packs one empty array per byte; each costs Python ~56 bytes
and the collector a visit, so 16 MiB of them would be ~1 GiB. With these budgets a 16 MiB frame
can never make more than ~350k containers (~20 MiB) before it is refused. One list or map may hold
65,536 items plus one per 16 bytes (its slots are allocated as soon as its header is read)."""
_MESSAGE_HEAD = b"\xa4kind"


def unpack_message(data: bytes) -> Any:
    """Decode a message body: :func:`unpackb`, and for a big one (:data:`BOUNDED_BYTES` or more)
    first a check that it is a map whose first key is ``kind`` (as every message is encoded;
    anything else is refused before decoding), then a decode that counts the containers and
    elements it builds and stops at the budget (:data:`BYTES_PER_CONTAINER`), with the
    collector paused. Raises DecodeError."""
    n = len(data)
    if n < BOUNDED_BYTES:
        return unpackb(data)
    first = data[0]
    pos = 1 if 0x80 <= first <= 0x8F else 3 if first == 0xDE else 5 if first == 0xDF else -1
    if pos < 0 or data[pos:pos + len(_MESSAGE_HEAD)] != _MESSAGE_HEAD:
        raise DecodeError(f"a {n}-byte frame that is not a message (a map whose first key is 'kind'); refused "
                          "without decoding it")
    max_containers = 4096 + n // BYTES_PER_CONTAINER
    max_elements = 65536 + n // BYTES_PER_ELEMENT
    max_items = 65536 + n // BYTES_PER_ITEM  # in one list or map: its slots are allocated from its header
    containers = elements = 0

    def over() -> DecodeError:
        return DecodeError(f"a {n}-byte message holds more than {max_containers} lists and maps or "
                           f"{max_elements} items: refused as a decode bomb",
                           {"max_containers": max_containers, "max_elements": max_elements})

    def list_hook(value: list[Any]) -> list[Any]:
        nonlocal containers, elements
        containers += 1
        elements += len(value)
        if containers > max_containers or elements > max_elements:
            raise over()
        return value

    def object_hook(value: dict[str, Any]) -> dict[str, Any]:
        nonlocal containers, elements
        containers += 1
        elements += 2 * len(value)
        if containers > max_containers or elements > max_elements:
            raise over()
        return value

    with gc_paused():
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True, ext_hook=_ext_hook,
                                   timestamp=0, list_hook=list_hook, object_hook=object_hook,
                                   max_array_len=max_items, max_map_len=max_items // 2)
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types
            raise DecodeError(f"undecodable frame: {type(exc).__name__}: {exc}") from None


def _unpackb(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_ext_hook,
            timestamp=0,
        )
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types
        raise DecodeError(f"undecodable frame: {type(exc).__name__}: {exc}") from None
