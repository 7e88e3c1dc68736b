"""Faust agents: ``score`` (transactions -> scores, alerts) and ``learn`` (feedback -> online learner)."""

__all__: list[str] = []
