"""The top layer: the ``fraudstream`` CLI, the demo, the alert tail, the embedded broker and the benchmark.

Tools may use every layer below; nothing below imports them.
"""

__all__ = ["bench", "broker", "children", "cli", "demo", "tail"]
