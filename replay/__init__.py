"""Offline tools over history, the top layer beside :mod:`stream.tools`: generate labelled data, replay it through
the engine with realistic label delays, evaluate its scores, and compare it with offline baselines."""

__all__ = ["baseline", "evaluate", "experiment", "generate", "mapping", "metrics", "replay", "report", "scoreboard"]
