"""The models and their inputs: card histories, engineered features, the sequence model, the online learner,
their fusion and signed snapshots. Above :mod:`stream.contracts`, below :mod:`stream.core`."""

__all__ = ["checkpoint", "features", "fusion", "history", "online", "profile", "profile_features", "reasons", "scoring",
           "sequence", "snapshot"]
