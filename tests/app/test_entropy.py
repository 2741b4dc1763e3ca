"""The pooled randomness hands out every byte once and never across a fork."""

from __future__ import annotations

import os

from v2py.app import entropy


def test_pool_slices_are_fresh_and_sized() -> None:
    seen = [entropy.urandom(n) for n in (1, 16, 33, 1024, 1025, 5000)]
    assert [len(b) for b in seen] == [1, 16, 33, 1024, 1025, 5000]
    # consecutive small draws are distinct slices (a repeat of 16 bytes is ~impossible)
    draws = {entropy.urandom(16) for _ in range(2000)}
    assert len(draws) == 2000


def test_child_after_fork_does_not_reuse_parent_pool() -> None:
    entropy.urandom(8)  # the pool now holds unread bytes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        os.write(w, entropy.urandom(64))
        os._exit(0)
    os.close(w)
    child = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    parent = entropy.urandom(64)
    assert len(child) == 64
    assert child != parent
