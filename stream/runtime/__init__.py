"""The Faust worker: the engine's app and tables (:mod:`~stream.runtime.engine`), its agents, model sync and web views.

:func:`stream.runtime.worker.create_engine` wires it all from one :class:`~stream.contracts.settings.Settings`.
"""

__all__ = ["agents", "engine", "heap", "logs", "modelsync", "stats", "telemetry", "web", "worker"]
