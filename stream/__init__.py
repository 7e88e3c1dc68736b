"""fraudstream's engine, in layers that import only downwards (enforced by import-linter, ``[tool.importlinter]``).

:mod:`stream.contracts` (records, settings) < :mod:`models` < :mod:`stream.core` (scoring, the label join,
training: no Faust, no Kafka) < :mod:`stream.patches` < :mod:`stream.kafka` < :mod:`stream.runtime` (the Faust worker)
< :mod:`stream.tools` and :mod:`replay` (CLI, demo, bench, replay, evaluation).
"""

__all__ = ["contracts", "core", "kafka", "patches", "runtime", "tools"]
