"""Stable hashes of transaction fields: the same in every process and every release.

Python's ``hash`` of a string changes from process to process, so histories,
the sequence model's buckets and redelivery checks use these instead. They
sit below :mod:`models.history` and :mod:`models.features`, which both need them.

Example:
    >>> stable_hash("merchant-42")
    3187588786
    >>> category_hash("FR") == stable_hash("FR")
    True
"""

from __future__ import annotations

import hashlib
import zlib

__all__ = ["category_hash", "stable_hash", "txid_hash"]


def stable_hash(text: str) -> int:
    """32-bit hash that is the same in every process (unlike ``hash``).

    >>> stable_hash("merchant-42")
    3187588786
    """
    return zlib.crc32(text.encode())


_CATEGORY_HASHES: dict[str, int] = {}


def category_hash(text: str) -> int:
    """:func:`stable_hash` of a category string (MCC, country, channel), cached: they are few.

    A plain dict, not ``lru_cache``: it is called for every transaction.

    >>> category_hash("FR") == stable_hash("FR")
    True
    """
    cached = _CATEGORY_HASHES.get(text)
    if cached is None:
        if len(_CATEGORY_HASHES) > 1 << 16:  # bound it against a flood of junk values
            _CATEGORY_HASHES.clear()
        cached = _CATEGORY_HASHES[text] = stable_hash(text)
    return cached


def txid_hash(transaction_id: str) -> int:
    """64-bit digest of a transaction id, used to spot a redelivered event.

    >>> txid_hash("t1") == txid_hash("t1") != txid_hash("t2")
    True
    """
    return int.from_bytes(hashlib.blake2b(transaction_id.encode(), digest_size=8).digest(), "big")
