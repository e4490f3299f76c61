"""Publisher -> subscriber over each channel kind, with real sockets and shared memory."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging

import numpy as np
import pytest

from ..conftest import TIMEOUT, eventually


@dataclasses.dataclass(frozen=True)
class Chunk:
    seq: int
    data: np.ndarray
    label: str


class Mode(enum.Enum):
    LOW = "lowpass"
    HIGH = "highpass"


@dataclasses.dataclass(frozen=True)
class Tuned:
    mode: Mode
    fallback: Mode | None = None
    history: list[Mode] = dataclasses.field(default_factory=list)
    data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Reading:
    value: float


Impostor = dataclasses.make_dataclass("Reading", [("other", int)], frozen=True)
"""Another class with Reading's wire name and other fields: a payload Reading cannot be rebuilt from."""
Impostor.__module__, Impostor.__qualname__ = Reading.__module__, Reading.__qualname__


ARRAYS = [
    np.arange(24, dtype=np.float64).reshape(4, 6),
    np.array([[1, -2], [3, -4]], dtype=np.int16),
    np.linspace(0, 1, 1000, dtype=np.float32),
    np.array([True, False, True]),
    (np.arange(12, dtype=np.complex64) * 1j).reshape(3, 4),
    np.zeros((0, 5), dtype=np.uint8),
]


async def pair(make_host, *, same_host_object=False, force_tcp=False, zero_copy=False, **pub_kwargs):
    pub_host = await make_host()
    sub_host = pub_host if same_host_object else await make_host()
    pub = await pub_host.publisher("T/OUT", force_tcp=force_tcp, **pub_kwargs)
    sub = await sub_host.subscriber("T/OUT", zero_copy=zero_copy)
    await sub.wait_for_publishers(1, TIMEOUT)
    return pub, sub


@pytest.mark.parametrize("kind", ["LOCAL", "SHM", "TCP"])
async def test_arrays_arrive_intact_and_in_order(make_host, kind):
    pub, sub = await pair(make_host, same_host_object=kind == "LOCAL", force_tcp=kind == "TCP")
    for rnd in range(3):
        for arr in ARRAYS:
            await pub.broadcast(arr + rnd if arr.dtype != bool else arr)
    for rnd in range(3):
        for arr in ARRAYS:
            delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
            expected = arr + rnd if arr.dtype != bool else arr
            assert delivery.channel == kind
            assert delivery.msg.dtype == expected.dtype and delivery.msg.shape == expected.shape
            np.testing.assert_array_equal(delivery.msg, expected)
            delivery.done()
    assert await pub.drain(TIMEOUT) and pub.in_flight == 0


@pytest.mark.parametrize("kind", ["LOCAL", "SHM", "TCP"])
async def test_received_arrays_cannot_corrupt_the_sender(make_host, kind):
    pub, sub = await pair(make_host, same_host_object=kind == "LOCAL", force_tcp=kind == "TCP",
                          zero_copy=kind == "SHM")
    original = np.arange(10.0)
    await pub.broadcast(original)
    delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
    got = delivery.msg
    if kind == "TCP":
        got[0] = 99.0  # a private copy: writable, and the sender never sees it
    else:
        with pytest.raises(ValueError):
            got[0] = 99.0  # a view of the sender's data is read-only
    assert original[0] == 0.0
    del got
    delivery.done()


async def test_dataclass_and_plain_messages(make_host):
    pub_host = await make_host()
    sub_host = await make_host()
    pub = await pub_host.publisher("D/OUT")
    sub = await sub_host.subscriber("D/OUT", msg_type=Chunk)
    await sub.wait_for_publishers(1, TIMEOUT)
    await pub.broadcast(Chunk(7, np.ones((2, 3)), "seven"))
    await pub.broadcast({"gain": 2.5, "names": ["a", "b"], "blob": b"\x00\x01"})
    chunk = await asyncio.wait_for(sub.recv(), TIMEOUT)
    assert isinstance(chunk, Chunk) and chunk.seq == 7 and chunk.label == "seven"
    np.testing.assert_array_equal(chunk.data, np.ones((2, 3)))
    plain = await asyncio.wait_for(sub.recv(), TIMEOUT)
    assert plain == {"gain": 2.5, "names": ["a", "b"], "blob": b"\x00\x01"}


@pytest.mark.parametrize("force_tcp", [False, True], ids=["SHM", "TCP"])
async def test_enum_fields_cross_a_process_boundary_as_members(make_host, force_tcp):
    pub_host, sub_host = await make_host(), await make_host()
    pub = await pub_host.publisher("E/OUT", force_tcp=force_tcp)
    sub = await sub_host.subscriber("E/OUT", msg_type=Tuned)
    await sub.wait_for_publishers(1, TIMEOUT)
    sent = Tuned(Mode.HIGH, None, [Mode.LOW, Mode.HIGH], np.arange(4.0))
    await pub.broadcast(sent)
    await pub.broadcast(Tuned(Mode.LOW, Mode.HIGH))
    got = await asyncio.wait_for(sub.recv(), TIMEOUT)
    assert got.mode is Mode.HIGH and got.fallback is None and got.history == [Mode.LOW, Mode.HIGH]
    np.testing.assert_array_equal(got.data, sent.data)
    assert await asyncio.wait_for(sub.recv(), TIMEOUT) == Tuned(Mode.LOW, Mode.HIGH)
    assert sub.dropped == 0 and sub.last_channel == ("TCP" if force_tcp else "SHM")


async def test_a_message_that_cannot_be_decoded_is_a_counted_drop_said_once(make_host, caplog):
    pub_host, sub_host = await make_host(), await make_host()
    pub = await pub_host.publisher("R/OUT")
    sub = await sub_host.subscriber("R/OUT", msg_type=Reading)
    await sub.wait_for_publishers(1, TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="ezmsg_console.pubsub.subscriber"):
        for msg in (Impostor(1), Reading(2.5), Impostor(2), Reading(3.5)):
            await pub.broadcast(msg)
        assert await asyncio.wait_for(sub.recv(), TIMEOUT) == Reading(2.5)
        assert await asyncio.wait_for(sub.recv(), TIMEOUT) == Reading(3.5)  # the subscriber carries on
    assert (sub.received, sub.dropped, sub.undecodable) == (4, 2, 2)
    warnings = [r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert len(warnings) == 1 and "R/OUT" in warnings[0] and "cannot rebuild" in warnings[0]
    await pub.drain(TIMEOUT)  # every slot came back: the bad messages were acknowledged too


async def test_fan_out_to_three_subscribers_on_two_hosts(make_host):
    pub_host = await make_host()
    other = await make_host()
    subs = [await pub_host.subscriber("F/OUT"), await other.subscriber("F/OUT"), await other.subscriber("F/OUT")]
    pub = await pub_host.publisher("F/OUT", num_buffers=4)
    for sub in subs:
        await sub.wait_for_publishers(1, TIMEOUT)

    async def consume(sub):
        return [int((await sub.recv())[0]) for _ in range(20)]

    consumers = [asyncio.ensure_future(consume(s)) for s in subs]
    for i in range(20):
        await pub.broadcast(np.array([i], dtype=np.int64))
    results = await asyncio.wait_for(asyncio.gather(*consumers), TIMEOUT)
    assert results == [list(range(20))] * 3
    assert sorted(d for d in (subs[0].info.host_id, subs[1].info.host_id)) == [subs[0].info.host_id] * 2


async def test_slow_subscriber_bounds_the_publisher_to_num_buffers(make_host):
    pub, sub = await pair(make_host, num_buffers=4)
    sent = 0

    async def produce():
        nonlocal sent
        for i in range(50):
            await pub.broadcast(np.array([i]))
            sent += 1

    producer = asyncio.ensure_future(produce())
    # Nobody reads: the publisher must stop after filling its 4 slots.
    while sub.pending < 4:
        await asyncio.wait_for(sub._arrived.wait(), TIMEOUT)  # noqa: SLF001 - test hook
        sub._arrived.clear()  # noqa: SLF001
    await asyncio.sleep(0.05)  # give a broken publisher the chance to run ahead
    assert sent == 4 and pub.in_flight == 4 and not producer.done()
    received = []
    for _ in range(50):
        delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
        received.append(int(delivery.msg[0]))
        assert pub.in_flight <= 4
        delivery.done()
    await asyncio.wait_for(producer, TIMEOUT)
    assert received == list(range(50))


async def test_leaky_subscriber_drops_oldest_and_counts(make_host):
    pub_host = await make_host()
    sub_host = await make_host()
    pub = await pub_host.publisher("L/OUT", num_buffers=2)
    sub = await sub_host.subscriber("L/OUT", leaky=True, max_queue=3)
    await sub.wait_for_publishers(1, TIMEOUT)
    for i in range(40):  # a leaky subscriber never holds the publisher back
        await asyncio.wait_for(pub.broadcast(np.array([i])), TIMEOUT)
    while sub.received < 40:
        await asyncio.wait_for(sub._arrived.wait(), TIMEOUT)  # noqa: SLF001
        sub._arrived.clear()  # noqa: SLF001
    kept = [int((await sub.recv())[0]) for _ in range(sub.pending)]
    assert kept == [37, 38, 39]
    assert sub.dropped == 37 and sub.received == 40


async def test_live_connect_and_disconnect_reroute(server, make_ctx, make_host):
    ctx = await make_ctx(server.address)
    pub_host = await make_host()
    sub_host = await make_host()
    pub = await pub_host.publisher("A/OUT")
    sub = await sub_host.subscriber("B/IN")
    assert sub.publisher_ids == []
    await ctx.connect("A/OUT", "X/RELAY")
    await ctx.connect("X/RELAY", "B/IN")  # transitively A/OUT reaches B/IN
    await sub.wait_for_publishers(1, TIMEOUT)
    await pub.broadcast(np.array([1]))
    assert int((await asyncio.wait_for(sub.recv(), TIMEOUT))[0]) == 1
    await ctx.disconnect("X/RELAY", "B/IN")
    while sub.publisher_ids:
        await asyncio.wait_for(sub._routes_changed.wait(), TIMEOUT)  # noqa: SLF001
        sub._routes_changed.clear()  # noqa: SLF001
    await eventually(lambda: not pub.links, what="the publisher seeing the link close")
    await pub.broadcast(np.array([2]))  # nobody listens now: no slot is taken
    assert pub.in_flight == 0 and pub.msg_id == 2
    snap = await ctx.snapshot()
    assert [p.topic for p in snap.publishers] == ["A/OUT"] and [s.topic for s in snap.subscribers] == ["B/IN"]


@pytest.mark.parametrize("force_tcp", [False, True])
async def test_message_larger_than_a_slot(make_host, force_tcp):
    pub, sub = await pair(make_host, buf_size=4096, force_tcp=force_tcp)
    big = np.arange(100_000, dtype=np.float64)  # 800 kB through 4 KiB slots
    await pub.broadcast(big)
    await pub.broadcast(np.array([5.0]))
    np.testing.assert_array_equal(await asyncio.wait_for(sub.recv(), TIMEOUT), big)
    np.testing.assert_array_equal(await asyncio.wait_for(sub.recv(), TIMEOUT), [5.0])


async def test_the_ring_grows_to_fit_without_copying_or_waiting(make_host):
    """Default slots (64 KiB), then a 200 KB and a 1 MiB message: both travel in shared memory, in
    new rings announced on the link; a zero-copy view of a message in the old ring stays valid."""
    pub, sub = await pair(make_host, zero_copy=True)
    small = np.arange(1000, dtype=np.float64)
    await pub.broadcast(small)
    held = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)  # leased, in the first ring
    frames = [np.full((100, 256), 1.5), np.arange(131_072, dtype=np.float64)]  # 200 KB, 1 MiB
    for frame in frames:
        await pub.broadcast(frame)
    for frame in frames:
        delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
        assert delivery.channel == "SHM" and not delivery.msg.flags.writeable  # a view of the ring
        np.testing.assert_array_equal(delivery.msg, frame)
        delivery.done()
    assert pub.rings_grown == 2 and pub.buf_size >= frames[1].nbytes
    np.testing.assert_array_equal(held.msg, small)  # the old ring is still mapped for it
    held.done()
    assert await pub.drain(TIMEOUT)


async def test_a_message_beyond_the_ring_limit_goes_inline(make_host, monkeypatch):
    monkeypatch.setenv("EZMSG_CONSOLE_MAX_RING_BYTES", str(4 * 1024 * 1024))  # 32 slots of 128 KiB at most
    pub, sub = await pair(make_host)
    big = np.arange(100_000, dtype=np.float64)  # 800 kB: a 900 KiB slot would need 28 MiB
    await pub.broadcast(big)
    delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
    np.testing.assert_array_equal(delivery.msg, big)
    assert delivery.channel == "TCP" and pub.rings_grown == 0  # inline, over the link's socket
    delivery.done()


async def test_zero_copy_view_kept_by_a_handler_holds_its_slot(make_host):
    pub, sub = await pair(make_host, num_buffers=2, zero_copy=True)
    await pub.broadcast(np.arange(4.0))
    delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
    kept = delivery.msg[1:]  # a derived view keeps the slot's memory alive
    delivery.done()
    assert not await pub.drain(0.2)  # the kept view holds the slot
    assert pub.in_flight == 1 and sub.kept_views == 1
    np.testing.assert_array_equal(kept, [1.0, 2.0, 3.0])
    del kept  # the last reference goes: the slot comes back
    assert await pub.drain(TIMEOUT)


async def test_subscriber_host_going_away_releases_the_publisher(make_host):
    pub, sub = await pair(make_host, num_buffers=2)
    await pub.broadcast(np.array([1]))
    await pub.broadcast(np.array([2]))
    assert pub.in_flight == 2
    await sub._host.close()  # noqa: SLF001 - the subscriber's process goes away
    await asyncio.wait_for(pub.broadcast(np.array([3])), TIMEOUT)  # no deadlock
    assert await pub.drain(TIMEOUT)


async def test_first_message_in_the_same_read_as_the_link_reply(make_host):
    """Regression: the ring must be mapped before the rest of the reply's read is parsed."""
    from ezmsg_console.pubsub.channel import KIND_SHM, MSG, SubscriberLink, hello_frame
    from ezmsg_console.pubsub.shm import Segment, new_name

    seen = []

    class Transport(asyncio.Transport):
        def write(self, data):  # noqa: D401 - a stand-in socket
            pass

        def close(self):
            pass

        def is_closing(self):
            return False

    ring = Segment(new_name("test"), 4096, create=True)
    try:
        ring.buf[:4] = b"\x01\x02\x03\x04"
        link = SubscriberLink({"pub_id": "p", "sub_id": "s", "shm": True},
                              lambda _l, kind, slot, msg_id, ns, body: seen.append(bytes(body)),
                              lambda nonce: "proof")
        link.connection_made(Transport())
        link.data_received(hello_frame({"nonce": "n"}) + hello_frame({"ok": True, "shm_name": ring.name,
                                                                       "buf_size": 4096})
                           + MSG.pack(KIND_SHM, 0, 1, 0, 4))  # challenge, reply and a message in one read
        assert (await asyncio.wait_for(link.ready, TIMEOUT))["ok"]
        assert seen == [b"\x01\x02\x03\x04"]
        link.release_ring()
    finally:
        ring.close()
