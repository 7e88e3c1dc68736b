"""Topic contracts: parse and validate what producers send, build what we emit.

Inputs arrive as raw bytes so that a bad record can be dead-lettered with its
original bytes and a precise reason instead of crashing the agent. Validation
is hand-written for speed (a JSON Schema validator costs more than scoring);
``tests/stream/contracts/test_records.py`` checks it agrees with ``schemas/*.json``.

Required transaction fields: ``transaction_id``, ``card_id``, ``timestamp``,
``amount`` (>= 0: zero-amount authorisations, such as account verification
or card testing, are real traffic). Optional, with defaults: ``currency``
("XXX"), ``merchant_id`` (""), ``mcc`` ("0000"), ``country`` ("ZZ"),
``channel`` ("unknown"), and the entity ids real card streams carry,
``device_id``, ``ip``, ``account_id`` ("": absent, so no profile). Unknown
extra fields are ignored.

Example:
    >>> limits = Limits.from_settings(Settings())
    >>> t = parse_transaction(b'{"transaction_id": "t1", "card_id": "c9", '
    ...     b'"timestamp": "2025-03-01T12:00:00Z", "amount": "19.90"}', limits)
    >>> t.event_time_ms, t.amount, t.country
    (1740830400000, 19.9, 'ZZ')
    >>> parse_transaction(b'{"transaction_id": "t2", "card_id": "c9", '
    ...     b'"timestamp": 1740830400000, "amount": -3}', limits)
    Traceback (most recent call last):
    ...
    stream.contracts.records.InvalidRecord: invalid_amount: amount must be >= 0, got -3
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import numpy as np

from stream.contracts.codec import JSONDecodeError, loads
from stream.contracts.settings import Settings

__all__ = [
    "CHANNELS_HINT",
    "RFC3339_PATTERN",
    "Feedback",
    "InvalidRecord",
    "Limits",
    "Transaction",
    "format_rfc3339",
    "format_rfc3339_many",
    "parse_feedback",
    "parse_rfc3339_ms",
    "parse_transaction",
]

#: Channels the generator uses; any non-empty string is accepted.
CHANNELS_HINT = ("pos", "ecom", "atm", "contactless")

_MAX_ID_LEN = 128
_MAX_AMOUNT = 1e9
_LABELS = {"fraud": 1, "legit": 0}
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


class InvalidRecord(ValueError):
    """A record that breaks its topic contract; ``reason`` is a stable code.

    Reason codes: ``oversized``, ``malformed_json``, ``not_an_object``,
    ``missing_field``, ``invalid_type``, ``invalid_value``, ``invalid_amount``,
    ``invalid_timestamp``, ``timestamp_out_of_range``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while parsing (from :class:`Settings`)."""

    max_bytes: int
    min_time_ms: int
    max_future_skew_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_bytes=settings.max_message_bytes,
            min_time_ms=parse_rfc3339_ms(settings.min_event_time),
            max_future_skew_ms=int(settings.max_future_skew_s * 1000),
        )


class Transaction(NamedTuple):
    """A validated transaction; ``event_time_ms`` is epoch milliseconds UTC.

    Immutable. A named tuple rather than a frozen dataclass: the score agent
    builds one per record, and a frozen dataclass sets each of the nine
    fields through ``object.__setattr__``, several times what a named tuple
    costs to build.
    """

    transaction_id: str
    card_id: str
    event_time_ms: int
    amount: float
    currency: str = "XXX"
    merchant_id: str = ""
    mcc: str = "0000"
    country: str = "ZZ"
    channel: str = "unknown"
    device_id: str = ""
    ip: str = ""
    account_id: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        """The contract's field names, timestamp as RFC 3339."""
        return {
            "transaction_id": self.transaction_id,
            "card_id": self.card_id,
            "timestamp": format_rfc3339(self.event_time_ms),
            "amount": self.amount,
            "currency": self.currency,
            "merchant_id": self.merchant_id,
            "mcc": self.mcc,
            "country": self.country,
            "channel": self.channel,
            "device_id": self.device_id,
            "ip": self.ip,
            "account_id": self.account_id,
        }


@dataclass(frozen=True, slots=True)
class Feedback:
    """A validated label for one transaction."""

    transaction_id: str
    card_id: str
    label: Literal[0, 1]
    source: str
    labelled_at_ms: int | None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?"
)
#: The same pattern, published in schemas/*.json for string timestamps.
RFC3339_PATTERN = _RFC3339.pattern


def parse_rfc3339_ms(text: str) -> int:
    """RFC 3339 date-time to epoch milliseconds; no offset means UTC.

    Fractions beyond milliseconds (Java and Go send nanoseconds) are truncated.

    >>> parse_rfc3339_ms("2025-01-01T00:00:01.5+01:00")
    1735686001500
    >>> parse_rfc3339_ms("2025-01-01T00:00:00.123456789Z")
    1735689600123
    """
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    ms = int(dt.timestamp()) * 1000 + (int((frac or "0")[:3].ljust(3, "0")))
    if offset and offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        ms -= sign * (int(offset[1:3]) * 60 + int(offset[4:6])) * 60_000
    return ms


def format_rfc3339(ms: int) -> str:
    """Epoch milliseconds to ``YYYY-MM-DDTHH:MM:SS.fffZ``.

    >>> format_rfc3339(1735686001500)
    '2024-12-31T23:00:01.500Z'
    """
    day, in_day = divmod(ms, 86_400_000)
    seconds, millis = divmod(in_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_utc_day(day)}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


# Where format_rfc3339_many is tested equal to format_rfc3339 (1970 to the end of 9999); outside,
# and for anything but integers, it calls format_rfc3339 itself, so errors stay the same.
_NUMPY_FORMATS = (0, 253_402_300_800_000)


def format_rfc3339_many(ms: Sequence[int]) -> list[str]:
    """:func:`format_rfc3339` of each value, in one NumPy call (a micro-batch's score records).

    About a fifth of the per-value cost here; a test holds it equal to
    :func:`format_rfc3339` over two seconds of every millisecond (a leap day's
    last, a year's last), both ends of the range and 20,000 random instants.

    >>> format_rfc3339_many([1735686001500, 0])
    ['2024-12-31T23:00:01.500Z', '1970-01-01T00:00:00.000Z']
    """
    values = np.asarray(ms)
    low, high = _NUMPY_FORMATS
    if not len(values):
        return []
    if values.dtype.kind != "i" or int(values.min()) < low or int(values.max()) >= high:
        return [format_rfc3339(v) for v in ms]
    return np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()


@lru_cache(maxsize=1024)  # every score record formats one; only the day goes through datetime
def _utc_day(day: int) -> str:
    # A replay's transactions are seconds apart, so a per-second cache missed on nearly every one.
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


def _load_object(raw: bytes | None, limits: Limits) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord("malformed_json", "empty record value (tombstone)")
    if len(raw) > limits.max_bytes:
        raise InvalidRecord("oversized", f"{len(raw)} bytes exceeds the {limits.max_bytes}-byte limit")
    try:
        obj = loads(raw)
    except (UnicodeDecodeError, JSONDecodeError) as exc:
        raise InvalidRecord("malformed_json", str(exc)) from None
    except RecursionError:
        raise InvalidRecord("malformed_json", "nesting too deep") from None
    if not isinstance(obj, dict):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _id(obj: dict[str, Any], name: str) -> str:
    if name not in obj or obj[name] is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord("invalid_type", f"{name} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text or len(text) > _MAX_ID_LEN:
        raise InvalidRecord("invalid_value", f"{name} must be 1-{_MAX_ID_LEN} characters")
    return text


def _opt_str(obj: dict[str, Any], name: str, default: str) -> str:
    value = obj.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord("invalid_type", f"{name} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > _MAX_ID_LEN:
        raise InvalidRecord("invalid_value", f"{name} longer than {_MAX_ID_LEN} characters")
    return text


def _time_ms(obj: dict[str, Any], name: str, limits: Limits, required: bool) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidRecord("missing_field", f"{name} is required")
        return None
    if isinstance(value, bool):
        raise InvalidRecord("invalid_type", f"{name} must be an RFC 3339 string or epoch milliseconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidRecord("invalid_timestamp", f"{name} is not finite")
        ms = int(value)
    elif isinstance(value, str):
        try:
            ms = parse_rfc3339_ms(value)
        except (ValueError, OverflowError):
            raise InvalidRecord("invalid_timestamp", f"{name} {value!r} is not RFC 3339") from None
    else:
        raise InvalidRecord("invalid_type", f"{name} must be an RFC 3339 string or epoch milliseconds")
    if ms < limits.min_time_ms:
        hint = " (epoch seconds instead of milliseconds?)" if ms > 0 and ms < 10**11 else ""
        raise InvalidRecord("timestamp_out_of_range", f"{name} {value!r} is before {format_rfc3339(limits.min_time_ms)}{hint}")
    horizon = int(time.time() * 1000) + limits.max_future_skew_ms
    if ms > horizon:
        raise InvalidRecord("timestamp_out_of_range", f"{name} {value!r} is more than {limits.max_future_skew_ms // 1000} s in the future")
    return ms


def _amount(obj: dict[str, Any]) -> float:
    if "amount" not in obj or obj["amount"] is None:
        raise InvalidRecord("missing_field", "amount is required")
    value = obj["amount"]
    if isinstance(value, bool):
        raise InvalidRecord("invalid_type", "amount must be a number, got bool")
    if isinstance(value, str):
        # Payment systems often send decimals as strings to dodge float rounding.
        if not _DECIMAL.fullmatch(value):
            raise InvalidRecord("invalid_amount", f"amount {obj['amount']!r} is not a decimal number")
        value = float(value)
    if not isinstance(value, (int, float)):
        raise InvalidRecord("invalid_type", f"amount must be a number, got {type(value).__name__}")
    amount = float(value)
    if not math.isfinite(amount):
        raise InvalidRecord("invalid_amount", f"amount must be finite, got {obj['amount']!r}")
    if amount < 0:
        raise InvalidRecord("invalid_amount", f"amount must be >= 0, got {obj['amount']!r}")
    if amount > _MAX_AMOUNT:
        raise InvalidRecord("invalid_amount", f"amount {amount} exceeds {_MAX_AMOUNT:.0e}")
    return amount


def parse_transaction(raw: bytes | None, limits: Limits) -> Transaction:
    """Validate one ``transactions`` record; raise :class:`InvalidRecord`."""
    obj = _load_object(raw, limits)
    # The usual record (string ids and categories, an epoch-ms int or RFC 3339 timestamp, a numeric
    # amount, all in range) is accepted in one expression; anything else takes the field-by-field
    # checks, which name what is wrong. Both accept and build the same (a test holds them equal);
    # the fast path nearly halves the cost of a valid record, most of the score agent's decode stage.
    get = obj.get
    tid, cid, ms, amount = get("transaction_id"), get("card_id"), get("timestamp"), get("amount")
    currency, merchant, mcc = get("currency", "XXX"), get("merchant_id", ""), get("mcc", "0000")
    country, channel = get("country", "ZZ"), get("channel", "unknown")
    device, ip, account = get("device_id", ""), get("ip", ""), get("account_id", "")
    if type(ms) is str:
        try:
            ms = parse_rfc3339_ms(ms)
        except (ValueError, OverflowError):
            ms = None  # the checks below say what is wrong with it
    if (type(tid) is str and type(cid) is str and type(ms) is int
            and (type(amount) is float or type(amount) is int)
            and type(currency) is str and type(merchant) is str and type(mcc) is str
            and type(country) is str and type(channel) is str
            and type(device) is str and type(ip) is str and type(account) is str
            and 0 < len(tid) <= _MAX_ID_LEN and 0 < len(cid) <= _MAX_ID_LEN
            and 0 <= amount <= _MAX_AMOUNT  # False for NaN, and infinity is over the limit
            and len(currency) <= _MAX_ID_LEN and len(merchant) <= _MAX_ID_LEN and len(mcc) <= _MAX_ID_LEN
            and len(country) <= _MAX_ID_LEN and len(channel) <= _MAX_ID_LEN
            and len(device) <= _MAX_ID_LEN and len(ip) <= _MAX_ID_LEN and len(account) <= _MAX_ID_LEN
            and limits.min_time_ms <= ms <= int(time.time() * 1000) + limits.max_future_skew_ms):
        return Transaction(tid, cid, ms, float(amount), currency, merchant, mcc, country, channel, device, ip, account)
    return _checked_transaction(obj, limits)


def _checked_transaction(obj: dict[str, Any], limits: Limits) -> Transaction:
    """:func:`parse_transaction` field by field: the precise error for a record that is not the usual kind."""
    # A decimal string may still overflow to infinity ("1e999"), so _amount checks finiteness.
    return Transaction(
        transaction_id=_id(obj, "transaction_id"),
        card_id=_id(obj, "card_id"),
        event_time_ms=_time_ms(obj, "timestamp", limits, required=True) or 0,
        amount=_amount(obj),
        currency=_opt_str(obj, "currency", "XXX"),
        merchant_id=_opt_str(obj, "merchant_id", ""),
        mcc=_opt_str(obj, "mcc", "0000"),
        country=_opt_str(obj, "country", "ZZ"),
        channel=_opt_str(obj, "channel", "unknown"),
        device_id=_opt_str(obj, "device_id", ""),
        ip=_opt_str(obj, "ip", ""),
        account_id=_opt_str(obj, "account_id", ""),
    )


def parse_feedback(raw: bytes | None, limits: Limits) -> Feedback:
    """Validate one ``feedback`` record; raise :class:`InvalidRecord`.

    ``label`` is ``"fraud"`` or ``"legit"`` (also ``1``/``0``, ``true``/``false``).

    >>> limits = Limits.from_settings(Settings())
    >>> parse_feedback(b'{"transaction_id": "t1", "card_id": "c9", "label": "fraud",'
    ...                b' "source": "chargeback"}', limits).label
    1
    """
    obj = _load_object(raw, limits)
    raw_label = obj.get("label")
    if raw_label is None:
        raise InvalidRecord("missing_field", "label is required")
    if isinstance(raw_label, str) and raw_label.lower() in _LABELS:
        label = _LABELS[raw_label.lower()]
    elif isinstance(raw_label, bool) or raw_label in (0, 1):
        label = int(raw_label)
    else:
        raise InvalidRecord("invalid_value", f"label must be 'fraud' or 'legit', got {raw_label!r}")
    return Feedback(
        transaction_id=_id(obj, "transaction_id"),
        card_id=_id(obj, "card_id"),
        label=1 if label else 0,
        source=_opt_str(obj, "source", "unknown"),
        labelled_at_ms=_time_ms(obj, "labelled_at", limits, required=False),
    )
