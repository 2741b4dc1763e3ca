"""Known-answer tests from docs/spec/vmess.md (sections 1, 4, 5, 6, 8, 9)."""

from __future__ import annotations

import pytest

from v2py.common.fnv import fnv1a32
from v2py.protocol.vmess.account import (
    VmessUser,
    alter_ids,
    cmd_key,
    format_uuid,
    parse_uuid,
)
from v2py.protocol.vmess.body import BodyWriter, ShakeMask, chacha_key, chunk_nonce
from v2py.protocol.vmess.commands import SwitchAccount, decode_command, encode_command
from v2py.protocol.vmess.constants import (
    RequestCommand,
    SecurityType,
    client_options,
    resolve_auto_security,
)
from v2py.protocol.vmess.header import (
    RequestHeader,
    aead_header_keys,
    auth_id_key,
    create_auth_id,
    decode_auth_id,
    decode_request_plaintext,
    encode_request_plaintext,
    legacy_auth,
    legacy_iv,
    open_aead_response_length,
    open_aead_response_payload,
    response_keys,
    seal_aead_request,
    seal_aead_response,
)
from v2py.protocol.vmess.kdf import kdf, kdf12, kdf16

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
PRIMARY = parse_uuid(UUID)
CMD_KEY = bytes.fromhex("b50d916ac0cec067981af8e5f38a758f")
TS = 1700000000
KEY = bytes(range(16))
IV = bytes(range(16, 32))


def no_rng(n: int) -> bytes:
    raise AssertionError("rng must not be used")


def test_fnv1a32() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(memoryview(b"foobar")) == 0xBF9CF968


def test_kdf_vector() -> None:
    out = kdf(
        b"Demo Key for KDF Value Test",
        b"Demo Path for KDF Value Test",
        b"Demo Path for KDF Value Test2",
        b"Demo Path for KDF Value Test3",
    )
    assert out.hex() == "53e9d7e1bd7bd25022b71ead07d8a596efc8a845c7888652fd684b4903dc8892"
    assert kdf16(b"k", b"p") == kdf(b"k", b"p")[:16]
    assert kdf12(b"k", b"p") == kdf(b"k", b"p")[:12]


def test_cmd_key_and_alter_ids() -> None:
    assert cmd_key(PRIMARY) == CMD_KEY
    ids = alter_ids(PRIMARY, 2)
    assert [format_uuid(i) for i in ids] == [
        "5a071834-12d5-980a-72ac-845d5568d17d",
        "b5f0dba2-de16-aea1-087e-fdbaa0aac7a3",
    ]
    user = VmessUser(PRIMARY, alter_id=2)
    assert user.cmd_key == CMD_KEY
    assert user.alter_id_list == ids
    assert user.all_ids == [PRIMARY, *ids]


@pytest.mark.parametrize(
    "text",
    [UUID, UUID.upper(), UUID.replace("-", ""), "b831381d63244d53-ad4f-8cda48b30811"],
)
def test_parse_uuid_accepts(text: str) -> None:
    assert parse_uuid(text) == PRIMARY
    assert format_uuid(parse_uuid(text)) == UUID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        UUID[:-1],
        UUID + "0",
        UUID.replace("b", "g"),
        "b831381d--6324-4d53-ad4f-8cda48b30811",
    ],
)
def test_parse_uuid_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_uuid(text)


def test_legacy_auth_and_iv() -> None:
    assert legacy_auth(PRIMARY, TS).hex() == "cb4c98431253a6f41d16adc57e6d3550"
    assert legacy_iv(TS).hex() == "7a29d7bdc972aaefb1f54e5205589e78"


def test_auth_id() -> None:
    assert auth_id_key(CMD_KEY).hex() == "1415ba74ca8b3d041a8f583fb4116315"
    aid = create_auth_id(CMD_KEY, TS, bytes([1, 2, 3, 4]))
    assert aid.hex() == "4774fe5cc901ea4f81f2159909767a36"
    assert decode_auth_id(bytes.fromhex("000000006553f10001020304b85575f7")) == TS
    assert decode_auth_id(bytes.fromhex("000000006553f10001020304b85575f8")) is None


PLAINTEXT = bytes.fromhex(
    "01"
    + IV.hex()
    + KEY.hex()
    + "42"
    + "0d"
    + "03"
    + "00"
    + "01"
    + "0050"
    + "01"
    + "7f000001"
    + "968b4778"
)
SEALED = bytes.fromhex(
    "4774fe5cc901ea4f81f2159909767a36"
    "ca311b40717d0cf0690860e90ad2215797d3"
    "0001020304050607"
    "8e3573dd1b58552f2be5798b573e8f5286d9a21eee1f11de837336ec9ff33deac46c12dbc15bba7a157f"
    "e2675e5350c71290ba2ff836e35263eb01fb996217aed0"
)


def test_request_plaintext_and_sealed_header() -> None:
    h = RequestHeader(
        body_iv=IV,
        body_key=KEY,
        response_auth=0x42,
        option=0x0D,
        security=SecurityType.AES_128_GCM,
        command=RequestCommand.TCP,
        address="127.0.0.1",
        port=80,
    )
    assert encode_request_plaintext(h, b"") == PLAINTEXT
    dec = decode_request_plaintext(PLAINTEXT)
    assert dec.checksum_ok and dec.address_valid and dec.header == h
    aid = SEALED[:16]
    nonce = bytes(range(8))
    k_len, n_len, k_hdr, n_hdr = aead_header_keys(CMD_KEY, aid, nonce)
    assert k_len.hex() == "ba1895c9f68aa1427d19bcb3317e5603"
    assert n_len.hex() == "1741aa6b0595d7c5b00fb7b4"
    assert k_hdr.hex() == "c550b2c4797ce884ecc9506a980aee42"
    assert n_hdr.hex() == "7ec99ee929b83032c07e787b"
    sealed = seal_aead_request(
        CMD_KEY, PLAINTEXT, TS, no_rng, auth_rand=bytes([1, 2, 3, 4]), conn_nonce=nonce
    )
    assert len(sealed) == 107
    assert sealed == SEALED


def test_response_keys() -> None:
    k, i = response_keys(KEY, IV, aead=True)
    assert k.hex() == "be45cb2605bf36bebde684841a28f0fd"
    assert i.hex() == "fc2e2c73072bfa2bda03ff9307472deb"
    k2, i2 = response_keys(KEY, IV, aead=False)
    assert k2.hex() == "1ac1ef01e96caf1be0d329331a4fc2a8"
    assert i2.hex() == "1bf42e241816ba29ff5f307bb1bc1d16"


def test_aead_response_header() -> None:
    k, i = response_keys(KEY, IV, aead=True)
    sealed = seal_aead_response(k, i, bytes([0x42, 0, 0, 0]))
    assert sealed.hex() == (
        "936c422a7a3f0c4835561f50648898c4d6e3b210e4a64fdc360d8988702258bf83cb5d83f1f5"
    )
    assert open_aead_response_length(k, i, sealed[:18]) == 4
    assert open_aead_response_payload(k, i, sealed[18:]) == bytes([0x42, 0, 0, 0])
    assert open_aead_response_length(k, i, bytes(18)) is None


def test_chacha_key_nonce_shake() -> None:
    assert chacha_key(KEY).hex() == (
        "1ac1ef01e96caf1be0d329331a4fc2a8e0542db5418c43d256a6a643afa553fe"
    )
    assert chunk_nonce(0, IV).hex() == "000012131415161718191a1b"
    m = ShakeMask(IV)
    assert [m.next() for _ in range(4)] == [0xFC91, 0x8E43, 0xECC4, 0xB6AE]


def test_shake_mask_long_stream_matches_hashlib() -> None:
    import hashlib

    m = ShakeMask(IV)
    words = [m.next() for _ in range(5000)]
    ref = hashlib.shake_128(IV).digest(10000)
    assert words == [int.from_bytes(ref[j : j + 2], "big") for j in range(0, 10000, 2)]


def test_gcm_chunk_vector() -> None:
    pad_bytes: list[int] = []

    def rng(n: int) -> bytes:
        pad_bytes.append(n)
        return bytes(n)

    w = BodyWriter(SecurityType.AES_128_GCM, 0x0D, KEY, IV, rng=rng)
    out = w.seal(b"hello")
    assert out[:2].hex() == "8e65"
    assert out[2:23].hex() == "a316c4d586054e854b4a74fc9040de5bd5eb74d177"
    assert len(out) == 2 + 21 + 17
    assert out[23:] == bytes(17)
    assert sum(pad_bytes) >= 17


def test_switch_account_vector() -> None:
    cmd = SwitchAccount(
        host="",
        port=21110,
        id=bytes.fromhex("f063eb9b088b523ffaeea2816d2c9a38"),
        alter_ids=8,
        level=0,
        valid_min=2,
    )
    cmd_id, data = encode_command(cmd)
    assert cmd_id == 1
    assert len(data) == 0x1B
    assert data.hex() == "79c6d772" + "00" + "5276" + cmd.id.hex() + "0008" + "00" + "02"
    assert decode_command(cmd_id, data) == cmd


def test_switch_account_with_host_roundtrip() -> None:
    cmd = SwitchAccount("example.com", 1, bytes(16), 65535, 255, 255)
    assert decode_command(*encode_command(cmd)) == cmd


def test_switch_account_truncated_or_bad_is_none() -> None:
    cmd_id, data = encode_command(SwitchAccount("", 21110, bytes(16), 8, 0, 2))
    body = data[4:]
    for n in range(len(body)):
        short = body[:n]
        assert decode_command(cmd_id, fnv1a32(short).to_bytes(4, "big") + short) is None
    assert decode_command(cmd_id, data[:3]) is None
    assert decode_command(2, data) is None
    bad = bytearray(data)
    bad[0] ^= 1
    assert decode_command(cmd_id, bytes(bad)) is None
    # host length claims more than the body holds
    body = bytes([200]) + body[1:]
    assert decode_command(cmd_id, fnv1a32(body).to_bytes(4, "big") + body) is None


def test_constants() -> None:
    assert resolve_auto_security("x86_64") == SecurityType.AES_128_GCM
    assert resolve_auto_security("aarch64") == SecurityType.AES_128_GCM
    assert resolve_auto_security("armv7l") == SecurityType.CHACHA20_POLY1305
    assert client_options(SecurityType.AES_128_GCM, False) == 0x0D
    assert client_options(SecurityType.CHACHA20_POLY1305, False) == 0x0D
    assert client_options(SecurityType.NONE, False) == 0x05
    assert client_options(SecurityType.NONE, True) == 0x0D
    assert client_options(SecurityType.LEGACY, False) == 0x01
    with pytest.raises(ValueError):
        client_options(SecurityType.AUTO, False)
