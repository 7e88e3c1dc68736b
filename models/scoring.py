"""The small interface every scorer implements, so models are interchangeable.

A scorer sees a micro-batch of :class:`ScoringItem` (the transaction, the
card's history before it, and its engineered features as a row of
:func:`~models.features.engineered_batch`) and returns one
fraud probability per item as a NumPy array. The online learner and the
sequence model both implement :class:`Scorer`; :mod:`models.fusion` combines
whatever scorers are present, on the log-odds scale (:func:`logit`).

Example:
    >>> import numpy as np
    >>> class Constant:
    ...     name, version = "constant", "1"
    ...     def score_batch(self, items):
    ...         return np.full(len(items), 0.5)
    >>> isinstance(Constant(), Scorer)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from models.history import History
from models.history_windows import Columns
from stream.contracts.records import Transaction

__all__ = ["LOGIT_CLIP", "Scorer", "ScoringItem", "logit"]


class ScoringItem(NamedTuple):
    """What a scorer may look at for one transaction (immutable: a named tuple, cheap to build per transaction)."""

    transaction: Transaction
    history: History  # the card's entries before this transaction, oldest first
    features: npt.NDArray[np.float64]  # engineered features, models.features.FEATURE_NAMES order
    #: Where this transaction's window already sits: row ``row`` of the batch's
    #: :func:`~models.history_windows.scored_windows` (every entry), gathered once for the engineered
    #: features and reused by the sequence model (:func:`models.steps.step_tensors`, which
    #: refuses a row that does not match). None: gathered again.
    windows: Columns | None = None
    row: int | None = None
    #: The transaction's entity features (:mod:`models.profile_features`) in
    #: :data:`~models.profile_features.ENTITY_INPUTS` order, 0 for a kind not profiled; None without entity profiles.
    entity: npt.NDArray[np.float64] | None = None


@runtime_checkable
class Scorer(Protocol):
    """A batch scorer: ``score_batch(items)[i]`` is P(fraud) for ``items[i]``."""

    name: str

    @property
    def version(self) -> str: ...

    def score_batch(self, items: Sequence[ScoringItem]) -> np.ndarray: ...


#: Probabilities are held within [LOGIT_CLIP, 1 - LOGIT_CLIP] before :func:`logit`.
LOGIT_CLIP = 1e-6


def logit(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Log-odds of probability ``p`` (a number or an array), how scores are combined and how priors start.

    ``p`` is held within [1e-6, 1 - 1e-6] first, so a model that is certain
    gives a large finite value, not an infinity that would swamp a sum.

    >>> logit(0.5), round(float(logit(1.0)), 2)
    (np.float64(0.0), 13.82)
    >>> logit(np.array([0.0, 0.25])).round(2).tolist()
    [-13.82, -1.1]
    """
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(q / (1 - q))
