"""An entity's profile (a terminal, a merchant, a device, an IP, a card): what it saw, and which of it was fraud.

Fraud that no single card shows (a skimmed terminal, a breached shop, a device
many stolen cards pass through) is visible in the entity's own traffic and in
the confirmed fraud on it. A profile keeps, per entity value, what its features
(:mod:`models.profile_features`) need, bounded whatever the traffic:

* the entity's transactions of the last hour, one by one (time, amount), at
  most :data:`MAX_RECENT`;
* hourly buckets of the last :data:`WINDOW_HOURS` hours: transactions, amount,
  transactions by a card new to the entity;
* the cards seen, each with the time it was last seen, at most
  :data:`MAX_CARDS` (the least recently seen go first);
* label events: (transaction, its time, the label's ``labelled_at``, fraud or
  not), at most :data:`MAX_LABELS`, so that a feature can ask what was *known*
  at a given time (a label counts from its ``labelled_at``, never earlier, and
  a correction from its own).

Everything is in event time, so a replay of last year gives what live traffic
got. Each update carries its position in the entity's one ordered source (the
offset of its record on the entity's partition): an update at or before the
last position applied is a redelivery after a crash and changes nothing, so
at-least-once delivery counts every transaction once, without a set of seen ids.

Example:
    >>> p = EntityProfile()
    >>> p.observe(1_000, 12.5, card="c1", position=0)
    True
    >>> p.observe(1_000, 12.5, card="c1", position=0)  # redelivered after a crash
    False
    >>> p.label("t1", 1_000, labelled_at_ms=5_000, fraud=True, position=1)
    True
    >>> [(e.transaction_time_ms, e.labelled_at_ms, e.fraud) for e in p.labels]
    [(1000, 5000, True)]
    >>> decode(encode(p)) == p
    True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from models.hashing import stable_hash

__all__ = [
    "HOUR_MS",
    "MAX_CARDS",
    "MAX_LABELS",
    "MAX_RECENT",
    "WINDOW_HOURS",
    "EntityProfile",
    "LabelEvent",
    "ProfileFormatError",
    "decode",
    "encode",
]

HOUR_MS = 3_600_000
#: Hours of hourly buckets kept: the longest window (30 days) and the hour it starts in.
WINDOW_HOURS = 30 * 24 + 1
#: Transactions of the last hour kept one by one (a hot terminal's burst beyond it counts in its bucket only).
MAX_RECENT = 1024
#: Distinct cards kept per entity (up to a quarter more between two prunings).
MAX_CARDS = 4096
#: Label events kept per entity, the newest transactions' (up to a quarter more between two prunings).
MAX_LABELS = 512
#: Label events older than this (by their transaction's time) before the newest transaction are dropped.
LABEL_HORIZON_MS = WINDOW_HOURS * HOUR_MS


class ProfileFormatError(ValueError):
    """Bytes that are not an encoded profile (truncated, another format, a newer version)."""


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """One label of one of the entity's transactions, as it arrived."""

    transaction: int  # stable hash of the transaction id
    transaction_time_ms: int
    labelled_at_ms: int
    fraud: bool


@dataclass(slots=True)
class EntityProfile:
    """The state of one entity value; see the module docstring for what each part is for."""

    newest_ms: int = -(2**62)
    #: (time, amount) of the last hour's transactions, in arrival order.
    recent: list[tuple[int, float]] = field(default_factory=list)
    #: hour index -> [transactions, amount, transactions by a card new to the entity]
    hours: dict[int, list[float]] = field(default_factory=dict)
    #: card hash -> when it was last seen here
    cards: dict[int, int] = field(default_factory=dict)
    labels: list[LabelEvent] = field(default_factory=list)
    #: The last source position applied (see the module docstring).
    position: int = -1

    def observe(self, at_ms: int, amount: float, *, card: str, position: int) -> bool:
        """Count a transaction of this entity; False (and nothing changes) for a position already applied."""
        if position <= self.position:
            return False
        self.position = position
        card_hash = stable_hash(card)
        new_card = card_hash not in self.cards or self.cards[card_hash] > at_ms
        bucket = self.hours.setdefault(at_ms // HOUR_MS, [0.0, 0.0, 0.0])
        bucket[0] += 1
        bucket[1] += amount
        bucket[2] += new_card
        self.cards[card_hash] = max(self.cards.get(card_hash, at_ms), at_ms)
        self.recent.append((at_ms, amount))
        self.newest_ms = max(self.newest_ms, at_ms)
        self._prune()
        return True

    def label(self, transaction: str, transaction_time_ms: int, *, labelled_at_ms: int, fraud: bool,
              position: int) -> bool:
        """Record a label of one of this entity's transactions; it counts from ``labelled_at_ms`` on.

        The same label twice is kept once; a different one for the same
        transaction is kept beside it (a correction, known from its own time).
        False for a position already applied.
        """
        if position <= self.position:
            return False
        self.position = position
        event = LabelEvent(stable_hash(transaction), transaction_time_ms, labelled_at_ms, fraud)
        if event in self.labels:
            return True
        self.labels.append(event)
        if len(self.labels) > MAX_LABELS + MAX_LABELS // 4:  # in steps, as the cards
            # A legitimate label only matters as a correction of a fraud one: the others go first.
            ever_fraud = {e.transaction for e in self.labels if e.fraud}
            self.labels = [e for e in self.labels if e.transaction in ever_fraud]
            if len(self.labels) > MAX_LABELS:
                self.labels.sort(key=lambda e: (e.transaction_time_ms, e.labelled_at_ms))
                del self.labels[: len(self.labels) - MAX_LABELS]
        return True

    def _prune(self) -> None:
        newest = self.newest_ms
        first_hour = newest // HOUR_MS - WINDOW_HOURS + 1
        if len(self.hours) > WINDOW_HOURS or min(self.hours) < first_hour:
            self.hours = {h: b for h, b in self.hours.items() if h >= first_hour}
        if self.recent and (self.recent[0][0] < newest - HOUR_MS or len(self.recent) > MAX_RECENT):
            kept = [r for r in self.recent if r[0] >= newest - HOUR_MS]
            self.recent = kept[-MAX_RECENT:]
        if len(self.cards) > MAX_CARDS + MAX_CARDS // 4:  # in steps: a sort per transaction would cost too much
            newest_cards = sorted(self.cards.items(), key=lambda kv: kv[1])[-MAX_CARDS:]
            self.cards = dict(newest_cards)
        if self.labels and self.labels[0].transaction_time_ms < newest - LABEL_HORIZON_MS:
            self.labels = [e for e in self.labels if e.transaction_time_ms >= newest - LABEL_HORIZON_MS]


_VERSION = 1
_HEAD = struct.Struct("<BqqIIII")  # version, newest, position, len(recent), len(hours), len(cards), len(labels)
_RECENT = struct.Struct("<qd")
_HOUR = struct.Struct("<qddd")
_CARD = struct.Struct("<Iq")
_LABEL = struct.Struct("<Iqq?")


def encode(profile: EntityProfile) -> bytes:
    """The profile as the entity table's changelog keeps it (a version byte, then fixed-size records)."""
    parts = [_HEAD.pack(_VERSION, profile.newest_ms, profile.position, len(profile.recent), len(profile.hours),
                        len(profile.cards), len(profile.labels))]
    parts += [_RECENT.pack(*r) for r in profile.recent]
    parts += [_HOUR.pack(h, *b) for h, b in sorted(profile.hours.items())]
    parts += [_CARD.pack(c, at) for c, at in profile.cards.items()]
    parts += [_LABEL.pack(e.transaction, e.transaction_time_ms, e.labelled_at_ms, e.fraud) for e in profile.labels]
    return b"".join(parts)


def decode(data: bytes) -> EntityProfile:
    """Inverse of :func:`encode`; :class:`ProfileFormatError` for anything else.

    >>> decode(b"\\x07")
    Traceback (most recent call last):
    ...
    models.profile.ProfileFormatError: entity profile of 1 bytes: shorter than its 33-byte header
    """
    if len(data) < _HEAD.size:
        raise ProfileFormatError(f"entity profile of {len(data)} bytes: shorter than its {_HEAD.size}-byte header")
    version, newest, position, n_recent, n_hours, n_cards, n_labels = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise ProfileFormatError(f"entity profile format {version}; this release reads format {_VERSION}")
    size = (_HEAD.size + n_recent * _RECENT.size + n_hours * _HOUR.size + n_cards * _CARD.size
            + n_labels * _LABEL.size)
    if len(data) != size:
        raise ProfileFormatError(f"entity profile of {len(data)} bytes; its header describes {size}")
    at = _HEAD.size
    profile = EntityProfile(newest_ms=newest, position=position)
    for _ in range(n_recent):
        profile.recent.append(_RECENT.unpack_from(data, at))
        at += _RECENT.size
    for _ in range(n_hours):
        h, *bucket = _HOUR.unpack_from(data, at)
        profile.hours[h] = bucket
        at += _HOUR.size
    for _ in range(n_cards):
        card, seen_at = _CARD.unpack_from(data, at)
        profile.cards[card] = seen_at
        at += _CARD.size
    for _ in range(n_labels):
        profile.labels.append(LabelEvent(*_LABEL.unpack_from(data, at)))
        at += _LABEL.size
    return profile
