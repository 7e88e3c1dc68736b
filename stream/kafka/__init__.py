"""The Kafka layer: clients with the security settings, topics, micro-batches off Faust's channels, the outbox.

Above :mod:`stream.core` and :mod:`stream.patches`; below the Faust worker (:mod:`stream.runtime`) and the tools.
"""

__all__ = ["batches", "clients", "outbox", "partitioner", "raw", "security", "state", "topics"]
