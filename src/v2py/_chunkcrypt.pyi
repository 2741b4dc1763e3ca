from collections.abc import Callable

from typing_extensions import Buffer

class Aead:
    def __init__(self, cipher: str, key: bytes, encrypt: bool) -> None: ...
    def seal(
        self,
        data: Buffer,
        step: int,
        nonce_tail: bytes,
        counter: int,
        masks: bytes | None,
        padding: bool,
        rng: Callable[[int], bytes],
    ) -> tuple[bytearray, int]: ...
    def open(
        self,
        data: Buffer,
        pos: int,
        out: Buffer,
        opos: int,
        nonce_tail: bytes,
        counter: int,
        masks: bytes | None,
        padding: bool,
    ) -> tuple[int, int, int, int, int, int, int]: ...
    def ss_seal(self, data: Buffer, step: int, counter: int) -> tuple[bytearray, int]: ...
    def ss_open(
        self, data: Buffer, pos: int, out: Buffer, opos: int, counter: int
    ) -> tuple[int, int, int, int]: ...

def kdf(key: bytes, *path: bytes) -> bytes: ...

class AuthTable:
    def __init__(self, aesni: bool = True) -> None: ...
    def add(self, key: bytes) -> int: ...
    def remove(self, slot: int) -> None: ...
    def match(self, auth: bytes, now: int, window: int, first: int) -> int: ...

class LegacyTable:
    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def add(self, ids: bytes) -> int: ...
    def auth(self, slot: int, t: int) -> bytes: ...
    def emit(
        self,
        lo: int,
        hi: int,
        seconds: list[int],
        gens: list[list[bytearray | None]],
        skip: set[int] | None,
        bucket_shift: int,
        gen_mask: int,
    ) -> int: ...
