"""Reverse proxy control message and worker rules (v2ray-core 4.34 app/reverse;
bytes captured from a 4.34 portal on loopback, docs/reverse.md)."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.common.net import Network
from v2py.protocol.mux import DataReceived, MuxConnection, MuxRole, SessionOpened
from v2py.protocol.reverse import (
    INTERNAL_DOMAIN,
    MAX_RANDOM_BYTES,
    Control,
    ControlError,
    ControlState,
    bridge_needs_worker,
    decode_control,
    encode_control,
    new_control,
    pick_worker,
)

H = bytes.fromhex

# What a 4.34 portal sent on a bridge connection: the control session's New frame
# (UDP reverse.internal.v2ray.com:0) with the first message at once, then one Keep
# frame with a message every 2 s.
PORTAL_NEW = H(
    "0023 0001 01 01 02 0000 02 1a 726576657273652e696e7465726e616c2e76327261792e636f6d"
    "000d 9a060a2efc4e23a94f1c677e93"
)
PORTAL_KEEP = H("0004 0001 02 01 0017 9a06146f3775ad37c068033030c003d1cc4b2d20536776")


def _protobuf_control(state: int, random_bytes: bytes) -> bytes:
    """The same message serialized by the protobuf runtime (a dynamic descriptor with
    config.proto's fields), as Go's proto.Marshal serializes it."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(
        name="test_reverse_control.proto", package="t", syntax="proto3"
    )
    msg = fdp.message_type.add(name="Control")
    enum = msg.enum_type.add(name="State")
    enum.value.add(name="ACTIVE", number=0)
    enum.value.add(name="DRAIN", number=1)
    f = descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="state", number=1, type=f.TYPE_ENUM, type_name=".t.Control.State")
    msg.field.add(name="random", number=99, type=f.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Control"))
    return bytes(cls(state=state, random=random_bytes).SerializeToString(deterministic=True))


def test_captured_frames_carry_controls() -> None:
    server = MuxConnection(MuxRole.SERVER)
    server.receive_data(PORTAL_NEW + PORTAL_KEEP)
    opened = server.next_event()
    assert isinstance(opened, SessionOpened)
    assert opened.destination.network is Network.UDP
    assert (opened.destination.address, opened.destination.port) == (INTERNAL_DOMAIN, 0)
    messages = []
    while (event := server.next_event()) is not None:
        assert isinstance(event, DataReceived)
        messages.append(decode_control(event.data))
    assert messages == [
        Control(random=H("2efc4e23a94f1c677e93")),
        Control(random=H("6f3775ad37c068033030c003d1cc4b2d20536776")),
    ]


def test_encode_matches_go() -> None:
    assert encode_control(Control(random=H("2efc4e23a94f1c677e93"))) == H(
        "9a060a2efc4e23a94f1c677e93"
    )
    assert encode_control(Control()) == b""
    assert encode_control(Control(state=ControlState.DRAIN)) == H("0801")
    assert encode_control(Control(state=ControlState.DRAIN, random=b"\x00")) == H("08019a060100")


@given(st.sampled_from([0, 1, 2, -1, 2**31 - 1, -(2**31)]), st.binary(max_size=300))
def test_encode_matches_protobuf_and_round_trips(state: int, data: bytes) -> None:
    control = Control(state=state, random=data)
    wire = encode_control(control)
    assert wire == _protobuf_control(state, data)
    decoded = decode_control(wire)
    assert int(decoded.state) == state and decoded.random == data


def test_decode_skips_unknown_fields_and_takes_the_last_value() -> None:
    wire = H("1005") + H("0801") + H("2203616263") + H("2d01020304") + H("1101020304050607 08")
    wire += H("0800") + H("9a0601aa") + H("9a0601bb")
    assert decode_control(wire) == Control(state=ControlState.ACTIVE, random=b"\xbb")
    # a known field with another wire type is an unknown field to protobuf
    assert decode_control(H("0801 0a0100 9d0601020304")) == Control(state=ControlState.DRAIN)


@pytest.mark.parametrize(
    "wire",
    ["08", "0880", "9a0605aa", "0d000000", "0b", "00", "9a06", "ff" * 11],
)
def test_decode_refuses_bad_framing(wire: str) -> None:
    with pytest.raises(ControlError):
        decode_control(H(wire))


@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes_gives_control_or_error(data: bytes) -> None:
    with contextlib.suppress(ControlError):
        decode_control(data)


def test_new_control_random_length() -> None:
    seeded = random.Random(7)

    def rng(n: int) -> bytes:
        return seeded.randbytes(n)

    lengths = {len(new_control(ControlState.ACTIVE, rng).random) for _ in range(2000)}
    assert lengths == set(range(MAX_RANDOM_BYTES))
    assert new_control(ControlState.DRAIN, lambda n: bytes(n)) == Control(state=ControlState.DRAIN)


def test_bridge_needs_worker() -> None:
    assert bridge_needs_worker([])
    assert not bridge_needs_worker([1])
    assert not bridge_needs_worker([16])
    assert bridge_needs_worker([17])
    assert not bridge_needs_worker([17, 16])  # 33 // 2 = 16, Go's integer division
    assert bridge_needs_worker([18, 17])


def test_pick_worker() -> None:
    assert pick_worker([]) is None
    assert pick_worker([(False, 3), (False, 1), (False, 1)]) == 1
    assert pick_worker([(True, 0), (False, 5)]) == 1
    assert pick_worker([(True, 4), (True, 2)]) == 1
