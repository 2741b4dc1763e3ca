"""What every fuzz target shares: a byte-consuming input reader, the invariant checks,
and the Atheris entry point.

A target is a module with ``test_one_input(data: bytes) -> None`` (raises on a broken
invariant, returns otherwise) and ``seeds() -> list[bytes]`` (well-formed inputs that
start the corpus: a coverage-guided fuzzer mutates them, which reaches states random
bytes never reach, such as the inside of a VMess header sealed with a real key).

The same ``test_one_input`` runs under Atheris (libFuzzer's coverage feedback, when
``python -m fuzz.<target>`` is run by hand or by the CI smoke test) and under
Hypothesis (``tests/test_fuzz_targets.py``), so a crash one finds replays in the other.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Default libFuzzer limits for hand runs: a decoder that keeps input must stay far
#: below this (libFuzzer reports "out-of-memory" above it).
RSS_LIMIT_MB = 1024
MAX_INPUT_BYTES = 8192


@contextlib.contextmanager
def instrumented(*packages: str) -> Iterator[None]:
    """Around a target's imports: when the target runs as ``python -m fuzz.<name>``,
    Atheris instruments the named packages' modules as they load (coverage feedback);
    otherwise (pytest, a plain import) this does nothing."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or not spec.name.startswith("fuzz."):
        yield
        return
    import atheris  # lazy: only a hand or CI fuzz run needs Atheris

    with atheris.instrument_imports(include=list(packages)):
        yield


class FuzzInput:
    """Reads typed values off the fuzzer's bytes; past the end everything is zero/empty.

    Deterministic, so one crashing input always replays the same way (Atheris'
    ``FuzzedDataProvider`` would do too, but Hypothesis must drive the same code).
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def u8(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def u16(self) -> int:
        return int.from_bytes(self.take(2).rjust(2, b"\0"), "big")

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.u8() % len(options)]

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def pieces(self) -> list[bytes]:
        """The rest as u8-length-prefixed pieces (how a target splits its stream input
        into reads: the fuzzer chooses the split points)."""
        out = []
        while self.remaining:
            out.append(self.take(self.u8()))
        return out


def split(data: bytes, inp: FuzzInput) -> list[bytes]:
    """``data`` cut into reads at points the fuzzer picks (at least one byte each);
    once the fuzzer's bytes run out, the rest is one read."""
    out = []
    pos = 0
    while pos < len(data):
        n = 1 + inp.u16() % (len(data) - pos) if inp.remaining else len(data) - pos
        out.append(data[pos : pos + n])
        pos += n
    return out


class InvariantError(AssertionError):
    """A decoder broke the fuzzing invariant (this is a bug, not bad input)."""


def check(condition: bool, message: str) -> None:
    """Raise InvariantError unless ``condition`` (``assert`` is stripped by -O)."""
    if not condition:
        raise InvariantError(message)


def bounded(produced: int, consumed: int, *, factor: int, slack: int, what: str) -> None:
    """Output (or buffered state) must stay proportional to the input: a decoder that
    amplifies is a memory-exhaustion bug."""
    check(
        produced <= factor * consumed + slack,
        f"{what}: {produced} bytes for {consumed} bytes of input",
    )


def main(target: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Run ``target`` under Atheris with ``sys.argv`` as libFuzzer flags.

    With no corpus directory among the arguments, the seeds are written to a
    temporary one (libFuzzer then also writes the inputs it finds there).
    The target's modules were instrumented as they loaded (:func:`instrumented`).
    """
    import atheris  # lazy: the CI fallback and a plain import need no Atheris

    argv = list(sys.argv)
    if not any(not a.startswith("-") and os.path.isdir(a) for a in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="v2py-fuzz-"))
        atexit.register(shutil.rmtree, corpus, ignore_errors=True)
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
        argv.append(str(corpus))
    if not any(a.startswith("-rss_limit_mb=") for a in argv):
        argv.append(f"-rss_limit_mb={RSS_LIMIT_MB}")
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append(f"-max_len={MAX_INPUT_BYTES}")
    atheris.Setup(argv, target)
    atheris.Fuzz()
