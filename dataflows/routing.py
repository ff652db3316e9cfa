"""Which worker a Bytewax key lands on, so that each worker holds exactly one model replica.

Bytewax 0.21 routes a key of a stateful step to worker ``hash(key) % workers``, where ``hash``
is Rust's ``DefaultHasher`` (SipHash-1-3 with zero keys) over the key string's bytes followed by
the byte 0xFF (Rust's ``Hash`` for ``str``). :func:`replica_keys` picks, for ``workers``
workers, one key per worker; the replica step keeps the model replica under those keys, so
every worker owns one replica and no worker owns two. :func:`replica_of` names the replica on
the worker that holds a user's key, so a user's own messages never leave that worker (only the
observations, which every replica learns, cross to the others). ``tests/test_routing.py``
checks the prediction against a real multi-worker run.

>>> replica_keys(1)
['replica-0']
>>> [worker_of(key, 2) for key in replica_keys(2)]
[0, 1]
>>> worker_of(replica_of("ann", replica_keys(2)), 2) == worker_of("ann", 2)
True
"""

from __future__ import annotations

from functools import lru_cache

_MASK = (1 << 64) - 1


def _rotate(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotate(v1, 13) ^ v0
    v0 = _rotate(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotate(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotate(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotate(v1, 17) ^ v2
    v2 = _rotate(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` with the keys (0, 0): Rust's ``DefaultHasher``."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    whole = len(data) - len(data) % 8
    for start in range(0, whole, 8):
        block = int.from_bytes(data[start : start + 8], "little")
        v3 ^= block
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= block
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@lru_cache(maxsize=1 << 16)
def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax routes ``key`` to in a cluster of ``workers`` workers (the hash is
    pure Python, about 5 µs: the most recent keys are remembered)."""
    return siphash13(key.encode() + b"\xff") % workers


def replica_keys(workers: int) -> list[str]:
    """One key per worker, in worker order: ``replica-N`` with the smallest N landing there."""
    keys: dict[int, str] = {}
    number = 0
    while len(keys) < workers:
        key = f"replica-{number}"
        keys.setdefault(worker_of(key, workers), key)
        number += 1
    return [keys[worker] for worker in range(workers)]


def replica_of(key: str, replicas: list[str]) -> str:
    """The replica key (of :func:`replica_keys`) on the worker that holds ``key``."""
    return replicas[worker_of(key, len(replicas))]
