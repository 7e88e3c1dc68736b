"""The engine's logic with no Faust and no Kafka: micro-batches of records in, state and output records out.

Scoring a batch (:mod:`stream.core.scoring`), joining a label with what was
scored (:mod:`stream.core.labels`) and the trainer's step
(:mod:`stream.core.training`) are plain objects over plain values; the Faust
agents (:mod:`stream.runtime.agents`) only move records between Kafka and them.
The records the engine keeps in its own tables and topics are defined once,
in :mod:`stream.core.stored`.
"""

from stream.core.entities import EntityEvent, EntityStage
from stream.core.scoring import BatchScoring, ScoredBatch
from stream.core.source import InMemoryRecord, SourceRecord
from stream.core.stored import FeatureEntry, LabelledExample, ParkedLabel, SourceMessage, StoredRecordError

__all__ = [
    "BatchScoring",
    "EntityEvent",
    "EntityStage",
    "FeatureEntry",
    "InMemoryRecord",
    "LabelledExample",
    "ParkedLabel",
    "ScoredBatch",
    "SourceMessage",
    "SourceRecord",
    "StoredRecordError",
]
