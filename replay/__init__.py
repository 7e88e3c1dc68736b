"""Offline replay tooling: generate labelled transactions, evaluate scores, write the report.

``replay.generate`` makes the data set, ``replay.evaluate`` joins the engine's
scores with its labels, ``replay.report`` renders the result.
"""

__all__: list[str] = []
