"""Kafka's default partition for a whole micro-batch of keys at once.

A keyed record with no partition goes where Kafka's default partitioner puts
it: ``toPositive(murmur2(key)) % partitions`` (Java's ``Utils.murmur2``,
which aiokafka's ``DefaultPartitioner`` and librdkafka's ``murmur2_random``
reproduce). aiokafka computes it per record in pure Python, after listing the
topic's partitions twice: appending a score record with ``partition=None``
cost nearly twice as much as with its partition given. :func:`default_partitions`
computes the same partitions for a micro-batch's keys in one compiled loop
over their joined bytes (:mod:`models.compiled`; an order of magnitude faster
than the NumPy version grouped by key length it replaces), and the outbox
hands aiokafka explicit partitions. Tests hold :func:`murmur2_many` equal to
aiokafka's ``murmur2`` for keys of every length from 0 to 64 bytes.

Example:
    >>> from aiokafka.partitioner import murmur2
    >>> keys = [b"card-1", b"card-22", b"", "carte-é".encode()]
    >>> murmur2_many(keys).tolist() == [murmur2(k) for k in keys]
    True
    >>> default_partitions([b"card-1", b"card-1", b"card-22"], [0, 1, 2, 3])
    [3, 3, 1]
    >>> from aiokafka.partitioner import DefaultPartitioner
    >>> [DefaultPartitioner()(k, [0, 1, 2, 3], []) for k in (b"card-1", b"card-22")]
    [3, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.compiled import compiled, frozen

__all__ = ["compile_partitioner", "default_partitions", "murmur2_many"]

_SEED = np.uint64(0x9747B28C)
_M = np.uint64(0x5BD1E995)
_MASK = np.uint64(0xFFFFFFFF)
# Unsigned 64-bit literals: a plain int beside a uint64 makes Numba (and NumPy) compute in float64.
_U8, _U13, _U15, _U16, _U24 = np.uint64(8), np.uint64(13), np.uint64(15), np.uint64(16), np.uint64(24)


def murmur2_many(keys: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """Kafka's murmur2 of every key, as unsigned 32-bit values."""
    out = np.empty(len(keys), dtype=np.uint32)
    if keys:
        ends = np.cumsum([len(key) for key in keys], dtype=np.int64)
        _murmur2_kernel(frozen(np.frombuffer(b"".join(keys), dtype=np.uint8), np.uint8), frozen(ends, np.int64), out)
    return out


def compile_partitioner() -> None:
    """Compile (or load from Numba's cache) the murmur2 loop now, not on a worker's first records."""
    murmur2_many([b"card"])


@compiled
def _murmur2_kernel(data: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64], out: npt.NDArray[np.uint32]) -> None:
    """murmur2 of ``data[ends[i - 1]:ends[i]]`` into ``out[i]``: Java's loop, in 64-bit arithmetic masked to 32 bits."""
    start = 0
    for i in range(ends.shape[0]):
        end = ends[i]
        length = end - start
        h = (_SEED ^ np.uint64(length)) & _MASK
        p = start
        while p + 4 <= end:  # little-endian 4-byte words, as Java reads them
            k = (np.uint64(data[p]) | (np.uint64(data[p + 1]) << _U8) | (np.uint64(data[p + 2]) << _U16)
                 | (np.uint64(data[p + 3]) << _U24))
            k = (k * _M) & _MASK
            k ^= k >> _U24
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
            p += 4
        tail = end - p
        if tail >= 3:
            h ^= np.uint64(data[p + 2]) << _U16
        if tail >= 2:
            h ^= np.uint64(data[p + 1]) << _U8
        if tail >= 1:
            h ^= np.uint64(data[p])
            h = (h * _M) & _MASK
        h ^= h >> _U13
        h = (h * _M) & _MASK
        h ^= h >> _U15
        out[i] = h
        start = end


def default_partitions(keys: Sequence[bytes], partitions: Sequence[int]) -> list[int]:
    """The partition Kafka's default partitioner gives each key, among ``partitions`` (sorted by id)."""
    index = (murmur2_many(keys) & 0x7FFFFFFF) % len(partitions)
    return [partitions[i] for i in index.tolist()]
