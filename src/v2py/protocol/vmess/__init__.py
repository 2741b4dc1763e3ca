"""VMess protocol core (pure, sans-I/O), byte-compatible with V2Ray 4.34.

Spec: docs/spec/vmess.md.  See the submodules for details.
"""

from __future__ import annotations

from v2py.protocol.vmess.account import VmessUser, alter_ids, cmd_key, format_uuid, parse_uuid
from v2py.protocol.vmess.body import BodyReader, BodyWriter
from v2py.protocol.vmess.client import ClientState, VmessClientConnection
from v2py.protocol.vmess.commands import SwitchAccount, decode_command, encode_command
from v2py.protocol.vmess.constants import (
    AddressType,
    RequestCommand,
    RequestOption,
    SecurityType,
    client_options,
    resolve_auto_security,
)
from v2py.protocol.vmess.events import (
    DatagramReceived,
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    VmessEvent,
)
from v2py.protocol.vmess.header import RequestHeader
from v2py.protocol.vmess.kdf import kdf, kdf12, kdf16
from v2py.protocol.vmess.server import ServerState, VmessServerConnection
from v2py.protocol.vmess.validator import LegacyMatch, UserValidator

__all__ = [
    "AddressType",
    "BodyReader",
    "BodyWriter",
    "ClientState",
    "DataReceived",
    "DatagramReceived",
    "LegacyMatch",
    "RequestCommand",
    "RequestHeader",
    "RequestOption",
    "RequestReceived",
    "ResponseReceived",
    "SecurityType",
    "ServerState",
    "StreamEnded",
    "SwitchAccount",
    "UserValidator",
    "VmessClientConnection",
    "VmessEvent",
    "VmessServerConnection",
    "VmessUser",
    "alter_ids",
    "client_options",
    "cmd_key",
    "decode_command",
    "encode_command",
    "format_uuid",
    "kdf",
    "kdf12",
    "kdf16",
    "parse_uuid",
    "resolve_auto_security",
]
