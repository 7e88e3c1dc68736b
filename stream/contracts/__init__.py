"""The bottom layer: the records the engine accepts and emits, its dead-letter headers and its settings.

Everything here is plain Python over bytes and values: no Kafka, no Faust, no models.
"""

from stream.contracts.dlq import DeadLetter, dlq_headers
from stream.contracts.records import Feedback, InvalidRecord, Limits, Transaction, parse_feedback, parse_transaction
from stream.contracts.settings import Settings, SettingsError

__all__ = [
    "DeadLetter",
    "Feedback",
    "InvalidRecord",
    "Limits",
    "Settings",
    "SettingsError",
    "Transaction",
    "dlq_headers",
    "parse_feedback",
    "parse_transaction",
]
