"""An entity's profile (a terminal, a merchant, a device, an IP, a card): what it saw, and which of it was fraud.

Fraud that no single card shows (a skimmed terminal, a breached shop, a device
many stolen cards pass through) is visible in the entity's own traffic and in
the confirmed fraud on it. A profile keeps, per entity value, what its features
(:mod:`models.profile_features`) need, bounded whatever the traffic:

* the entity's transactions of the last hour, one by one (time, amount), at
  most :data:`MAX_RECENT`;
* hourly buckets of the last :data:`WINDOW_HOURS` hours: transactions, amount
  (in whole thousandths, so that sums are exact in any order: a profile
  rebuilt from its changelog gives the same features as one kept in memory),
  transactions by a card new to the entity;
* the cards seen, each with the times it was first and last seen, at most
  :data:`MAX_CARDS` (the least recently seen go first): a transaction is by
  a card new to the entity when the card was not seen before it in event
  time, whatever the order the transactions arrived in;
* label events: (transaction, its time, the label's ``labelled_at``, fraud or
  not), at most :data:`MAX_LABELS`, so that a feature can ask what was *known*
  at a given time (a label counts from its ``labelled_at``, never earlier, and
  a correction from its own);
* hourly buckets of the labels received (by the hour of their ``labelled_at``)
  and how many of them said fraud, for the last :data:`WINDOW_HOURS` hours: the
  share of recent verdicts that were fraud, however many legitimate labels the
  event list has let go. Each verdict received counts once, in the hour it
  arrived: a correction is one more verdict, beside the one it corrects.

Everything is in event time, so a replay of last year gives what live traffic
got. A transaction update carries where it was read from: its ``source`` (the
partition of the topic the hop before read it from) and its ``offset`` there.
A profile keeps the last offset applied per source, and every hop passes each
of its source partitions on in order, so an update at or before that offset
is a redelivery after a crash (of this hop or of one before it, which sends
the same records again) and changes nothing: at-least-once delivery counts
every transaction once, without a set of seen ids. Labels carry where the
route agent read them (the feedback partition and offset) and are checked the
same way; a label is also kept once however often it is sent (a correction,
with its own ``labelled_at``, is a new one).

Example:
    >>> p = EntityProfile()
    >>> p.observe(1_000, 12.5, card="c1", source=3, offset=70)
    True
    >>> p.observe(1_000, 12.5, card="c1", source=3, offset=70)  # redelivered after a crash
    False
    >>> p.label("t1", 1_000, labelled_at_ms=5_000, fraud=True)
    True
    >>> p.label("t1", 1_000, labelled_at_ms=5_000, fraud=True)  # the same label again
    False
    >>> [(e.transaction_time_ms, e.labelled_at_ms, e.fraud) for e in p.labels]
    [(1000, 5000, True)]
    >>> decode(encode(p)) == p
    True
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
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
    "ProfileIndex",
    "decode",
    "encode",
    "readable",
]

HOUR_MS = 3_600_000
#: Hours of hourly buckets kept: the longest window (30 days) and the hour it starts in.
WINDOW_HOURS = 30 * 24 + 1
#: Older buckets are dropped a day's worth at a time (the features never read them).
_PRUNE_SLACK_HOURS = 24
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


class ProfileIndex:
    """Sorted views of a profile that make its features a few binary searches instead of scans.

    Built from the profile when a feature needs it, kept up to date by the
    profile's in-order updates (the usual case), dropped and rebuilt after any
    other change (an out-of-order hour, a pruning). Not part of the state.
    """

    __slots__ = ("card_seen", "cum_amount", "cum_fraud_labels", "cum_labels", "cum_n", "cum_new", "fraud_times",
                 "hour_keys", "label_keys", "labels_known_from")

    def __init__(self, profile: EntityProfile) -> None:
        self.hour_keys = sorted(profile.hours)
        self.cum_n, self.cum_amount, self.cum_new = [0.0], [0.0], [0.0]
        for h in self.hour_keys:
            n, amount, new = profile.hours[h]
            self.cum_n.append(self.cum_n[-1] + n)
            self.cum_amount.append(self.cum_amount[-1] + amount)
            self.cum_new.append(self.cum_new[-1] + new)
        self.card_seen = sorted(profile.cards.values())
        self.fraud_times: list[int] | None = None  # known fraud, for times at or after labels_known_from
        self.labels_known_from = 0
        self.label_keys = sorted(profile.label_hours)
        self.cum_labels, self.cum_fraud_labels = [0.0], [0.0]
        for h in self.label_keys:
            n, fraud = profile.label_hours[h]
            self.cum_labels.append(self.cum_labels[-1] + n)
            self.cum_fraud_labels.append(self.cum_fraud_labels[-1] + fraud)

    def add_to_last_hour(self, hour: int, amount: float, new_card: bool) -> bool:
        """Count a transaction of the newest hour (or a newer one); False if it belongs further back."""
        if self.hour_keys and hour < self.hour_keys[-1]:
            return False
        if not self.hour_keys or hour > self.hour_keys[-1]:
            self.hour_keys.append(hour)
            self.cum_n.append(self.cum_n[-1])
            self.cum_amount.append(self.cum_amount[-1])
            self.cum_new.append(self.cum_new[-1])
        self.cum_n[-1] += 1
        self.cum_amount[-1] += amount
        self.cum_new[-1] += new_card
        return True

    def add_label_to_last_hour(self, hour: int, fraud: bool) -> bool:
        """Count a label received in the newest label hour (or a newer one); False if it belongs further back."""
        if self.label_keys and hour < self.label_keys[-1]:
            return False
        if not self.label_keys or hour > self.label_keys[-1]:
            self.label_keys.append(hour)
            self.cum_labels.append(self.cum_labels[-1])
            self.cum_fraud_labels.append(self.cum_fraud_labels[-1])
        self.cum_labels[-1] += 1
        self.cum_fraud_labels[-1] += fraud
        return True

    def labels_between(self, first: int, last: int) -> tuple[float, float]:
        """Labels received, and those saying fraud, in the hours ``first`` to ``last`` inclusive."""
        lo, hi = bisect_left(self.label_keys, first), bisect_left(self.label_keys, last + 1)
        return self.cum_labels[hi] - self.cum_labels[lo], self.cum_fraud_labels[hi] - self.cum_fraud_labels[lo]

    def move_card(self, before: int | None, after: int) -> None:
        if before is not None:
            del self.card_seen[bisect_left(self.card_seen, before)]
        insort(self.card_seen, after)

    def hours_between(self, first: int, last: int) -> tuple[float, float, float]:
        """Transactions, amount and new-card transactions of the hours ``first`` to ``last`` inclusive."""
        lo, hi = bisect_left(self.hour_keys, first), bisect_left(self.hour_keys, last + 1)
        return (self.cum_n[hi] - self.cum_n[lo], self.cum_amount[hi] - self.cum_amount[lo],
                self.cum_new[hi] - self.cum_new[lo])

    def cards_seen_between(self, start: int, end: int) -> int:
        """Cards last seen in ``[start, end)``."""
        return bisect_left(self.card_seen, end) - bisect_left(self.card_seen, start)


def _count_label(label_hours: dict[int, list[float]], labelled_at_ms: int, fraud: bool) -> int:
    """Count a label received at ``labelled_at_ms`` in its hour's bucket; returns the hour."""
    hour = labelled_at_ms // HOUR_MS
    bucket = label_hours.setdefault(hour, [0.0, 0.0])
    bucket[0] += 1
    bucket[1] += fraud
    return hour


@dataclass(slots=True)
class EntityProfile:
    """The state of one entity value; see the module docstring for what each part is for."""

    newest_ms: int = -(2**62)
    #: (time, amount in milli-units) of the last hour's transactions, in time order.
    recent: list[tuple[int, float]] = field(default_factory=list)
    #: hour index -> [transactions, amount in milli-units, transactions by a card new to the entity]
    hours: dict[int, list[float]] = field(default_factory=dict)
    #: card hash -> when it was last seen here
    cards: dict[int, int] = field(default_factory=dict)
    #: card hash -> its first transaction here (the one counted as by a new card), for the same cards
    first_seen: dict[int, int] = field(default_factory=dict)
    labels: list[LabelEvent] = field(default_factory=list)
    #: hour of ``labelled_at`` -> [labels received, of which fraud]
    label_hours: dict[int, list[float]] = field(default_factory=dict)
    #: Source -> the last offset applied from it (see the module docstring).
    sources: dict[int, int] = field(default_factory=dict)
    _index: ProfileIndex | None = field(default=None, compare=False, repr=False)

    def index(self) -> ProfileIndex:
        """The sorted views the features read (built on first use after a change they cannot follow)."""
        if self._index is None:
            self._index = ProfileIndex(self)
        return self._index

    def observe(self, at_ms: int, amount: float, *, card: str, source: int = 0, offset: int | None = None) -> bool:
        """Count a transaction of this entity; False (and nothing changes) for an offset of ``source`` already applied.

        ``offset`` None: no check (an offline fold, which reads each transaction once).
        """
        if offset is not None:
            if offset <= self.sources.get(source, -1):
                return False
            self.sources[source] = offset
        card_hash = stable_hash(card)
        seen_before = self.cards.get(card_hash)
        first = self.first_seen.get(card_hash)
        new_card = first is None or first > at_ms
        hour = at_ms // HOUR_MS
        milli = float(round(amount * 1000))  # whole milli-units: sums are exact, whatever order they are added in
        bucket = self.hours.setdefault(hour, [0.0, 0.0, 0.0])
        bucket[0] += 1
        bucket[1] += milli
        bucket[2] += new_card
        if new_card:
            self.first_seen[card_hash] = at_ms
            if first is not None and (earlier := self.hours.get(first // HOUR_MS)) is not None:
                # Arrived after a later transaction of the same card, which was counted as the new card's:
                # it no longer is, so that the buckets are those of any order of arrival.
                earlier[2] -= 1
                self._index = None
        last_seen = at_ms if seen_before is None else max(seen_before, at_ms)
        self.cards[card_hash] = last_seen
        index = self._index
        if index is not None:
            if index.add_to_last_hour(hour, milli, new_card):
                index.move_card(seen_before, last_seen)
            else:
                self._index = None
        if not self.recent or at_ms >= self.recent[-1][0]:
            self.recent.append((at_ms, milli))
        else:
            insort(self.recent, (at_ms, milli))
        self.newest_ms = max(self.newest_ms, at_ms)
        self._prune()
        return True

    def label(self, transaction: str, transaction_time_ms: int, *, labelled_at_ms: int, fraud: bool,
              source: int = 0, offset: int | None = None) -> bool:
        """Record a label of one of this entity's transactions; it counts from ``labelled_at_ms`` on.

        The same label twice is kept once (False the second time: the same
        label sent twice), and so is one at or before the last ``offset``
        applied from ``source`` (a redelivery: its label event may have been
        let go since, its count in the label buckets has not); a different one
        for the same transaction is kept beside it (a correction, known from
        its own time).
        """
        if offset is not None and offset <= self.sources.get(source, -1):
            return False
        event = LabelEvent(stable_hash(transaction), transaction_time_ms, labelled_at_ms, fraud)
        if event in self.labels:
            return False
        if offset is not None:
            self.sources[source] = offset
        self.labels.append(event)
        hour = _count_label(self.label_hours, labelled_at_ms, fraud)
        if self._index is not None:
            self._index.fraud_times = None
            if not self._index.add_label_to_last_hour(hour, fraud):
                self._index = None
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
        index = self._index
        oldest_hour = index.hour_keys[0] if index is not None and index.hour_keys else min(self.hours)
        if oldest_hour < first_hour - _PRUNE_SLACK_HOURS:  # in steps of a day: the index is rebuilt after each
            self.hours = {h: b for h, b in self.hours.items() if h >= first_hour}
            self._index = None
        if self.recent and (self.recent[0][0] < newest - HOUR_MS or len(self.recent) > MAX_RECENT):
            start = bisect_left(self.recent, (newest - HOUR_MS, -float("inf")))
            self.recent = self.recent[max(start, len(self.recent) - MAX_RECENT):]
        if len(self.cards) > MAX_CARDS + MAX_CARDS // 4:  # in steps: a sort per transaction would cost too much
            newest_cards = sorted(self.cards.items(), key=lambda kv: kv[1])[-MAX_CARDS:]
            self.cards = dict(newest_cards)
            self.first_seen = {card: self.first_seen[card] for card in self.cards}
            self._index = None
        if self.label_hours:
            index = self._index
            oldest_label = index.label_keys[0] if index is not None and index.label_keys else min(self.label_hours)
            if oldest_label < first_hour - _PRUNE_SLACK_HOURS:
                self.label_hours = {h: b for h, b in self.label_hours.items() if h >= first_hour}
                self._index = None
        if self.labels and self.labels[0].transaction_time_ms < newest - LABEL_HORIZON_MS:
            self.labels = [e for e in self.labels if e.transaction_time_ms >= newest - LABEL_HORIZON_MS]
            if self._index is not None:
                self._index.fraud_times = None


_VERSION = 3
#: version, newest, len(recent), len(hours), len(cards), len(labels), len(sources), len(label_hours)
_HEAD = struct.Struct("<BqIIIIII")
_HEAD_V2 = struct.Struct("<BqIIIII")  # version 2: the same without label hours
_HEAD_V1 = struct.Struct("<BqqIIII")  # version 1: version, newest, position (one source), then the same counts
_SOURCE = struct.Struct("<Iq")
_RECENT = struct.Struct("<qd")
_HOUR = struct.Struct("<qddd")
_CARD = struct.Struct("<Iqq")  # card hash, last seen, first seen
_CARD_V1 = struct.Struct("<Iq")  # card hash, last seen
_LABEL = struct.Struct("<Iqq?")
_LABEL_HOUR = struct.Struct("<qdd")


def encode(profile: EntityProfile) -> bytes:
    """The profile as the entity table's changelog keeps it (a version byte, then fixed-size records)."""
    parts = [_HEAD.pack(_VERSION, profile.newest_ms, len(profile.recent), len(profile.hours),
                        len(profile.cards), len(profile.labels), len(profile.sources), len(profile.label_hours))]
    parts += [_RECENT.pack(*r) for r in profile.recent]
    parts += [_HOUR.pack(h, *b) for h, b in sorted(profile.hours.items())]
    first_seen = profile.first_seen
    parts += [_CARD.pack(c, at, first_seen.get(c, at)) for c, at in profile.cards.items()]
    parts += [_LABEL.pack(e.transaction, e.transaction_time_ms, e.labelled_at_ms, e.fraud) for e in profile.labels]
    parts += [_SOURCE.pack(source, offset) for source, offset in profile.sources.items()]
    parts += [_LABEL_HOUR.pack(h, *b) for h, b in sorted(profile.label_hours.items())]
    return b"".join(parts)


def readable(profile: EntityProfile) -> dict[str, object]:
    """The profile as plain JSON values, in a canonical order (what the worker's web view shows).

    Two profiles that counted the same transactions and labels, in any order
    and from any sources, read the same: the order of arrival only shows in
    ``sources`` (left out) and in buckets pruned at different times (older
    than the 30-day window, which no feature reads: left out).

    >>> p = EntityProfile()
    >>> p.observe(7_200_000, 12.5, card="c1", source=1, offset=3)
    True
    >>> readable(p)["hours"], readable(p)["cards"]
    ([[2, 1.0, 12500.0, 1.0]], 1)
    """
    first_hour = profile.newest_ms // HOUR_MS - WINDOW_HOURS + 1
    return {
        "newest_ms": profile.newest_ms,
        "recent": [[at, amount] for at, amount in sorted(profile.recent)],
        "hours": [[h, *profile.hours[h]] for h in sorted(profile.hours) if h >= first_hour],
        "cards": len(profile.cards),
        "card_seen": sorted([card, profile.first_seen.get(card, at), at] for card, at in profile.cards.items()),
        "labels": sorted([e.transaction, e.transaction_time_ms, e.labelled_at_ms, e.fraud] for e in profile.labels),
        "label_hours": [[h, *profile.label_hours[h]] for h in sorted(profile.label_hours) if h >= first_hour],
    }


def decode(data: bytes) -> EntityProfile:
    """Inverse of :func:`encode`; :class:`ProfileFormatError` for anything else.

    >>> decode(b"\\x07")
    Traceback (most recent call last):
    ...
    models.profile.ProfileFormatError: entity profile format 7; this release reads formats 1 to 3
    >>> decode(b"\\x03")
    Traceback (most recent call last):
    ...
    models.profile.ProfileFormatError: entity profile of 1 bytes: shorter than its 33-byte header
    """
    if not data:
        raise ProfileFormatError("entity profile of 0 bytes: shorter than its header")
    version = data[0]
    if version == 1:  # one source position, which the sources that replace it cannot use: dropped
        head, card_struct = _HEAD_V1, _CARD_V1
    elif version == 2:
        head, card_struct = _HEAD_V2, _CARD
    elif version == _VERSION:
        head, card_struct = _HEAD, _CARD
    else:
        raise ProfileFormatError(f"entity profile format {version}; this release reads formats 1 to {_VERSION}")
    if len(data) < head.size:
        raise ProfileFormatError(f"entity profile of {len(data)} bytes: shorter than its {head.size}-byte header")
    n_sources = n_label_hours = 0
    if version == 1:
        _, newest, _, n_recent, n_hours, n_cards, n_labels = head.unpack_from(data)
    elif version == 2:
        _, newest, n_recent, n_hours, n_cards, n_labels, n_sources = head.unpack_from(data)
    else:
        _, newest, n_recent, n_hours, n_cards, n_labels, n_sources, n_label_hours = head.unpack_from(data)
    size = (head.size + n_recent * _RECENT.size + n_hours * _HOUR.size + n_cards * card_struct.size
            + n_labels * _LABEL.size + n_sources * _SOURCE.size + n_label_hours * _LABEL_HOUR.size)
    if len(data) != size:
        raise ProfileFormatError(f"entity profile of {len(data)} bytes; its header describes {size}")
    at = head.size
    profile = EntityProfile(newest_ms=newest)
    for _ in range(n_recent):
        profile.recent.append(_RECENT.unpack_from(data, at))
        at += _RECENT.size
    for _ in range(n_hours):
        h, *bucket = _HOUR.unpack_from(data, at)
        profile.hours[h] = bucket
        at += _HOUR.size
    for _ in range(n_cards):
        card, seen_at, *first = card_struct.unpack_from(data, at)
        profile.cards[card] = seen_at
        profile.first_seen[card] = first[0] if first else seen_at  # format 1 kept no first time: the last one
        at += card_struct.size
    for _ in range(n_labels):
        profile.labels.append(LabelEvent(*_LABEL.unpack_from(data, at)))
        at += _LABEL.size
    for _ in range(n_sources):
        source, offset = _SOURCE.unpack_from(data, at)
        profile.sources[source] = offset
        at += _SOURCE.size
    for _ in range(n_label_hours):
        h, *bucket = _LABEL_HOUR.unpack_from(data, at)
        profile.label_hours[h] = bucket
        at += _LABEL_HOUR.size
    if version < 3:  # kept no label hours: those of the label events it kept (legitimate ones may have gone)
        for e in profile.labels:
            _count_label(profile.label_hours, e.labelled_at_ms, e.fraud)
    return profile
