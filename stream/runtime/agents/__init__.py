"""Faust agents, thin adapters over :mod:`stream.core`: ``score`` (transactions -> scores, alerts), ``learn``
(feedback -> labelled examples) and ``train`` (labelled examples -> the shared online learner)."""

__all__ = ["learn", "score", "train"]
