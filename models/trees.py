"""The fused score: gradient-boosted trees over every input, refit from the labels the engine has received.

A logistic regression learning one label at a time adapts at once but can
only add up its inputs: it cannot learn that a terminal's known fraud
matters only where the terminal is busy, or that a card's burst matters more
on a new merchant. Trees can. So the trainer keeps the recent labelled
examples (:class:`ExampleWindow`: the very input vectors the engine scored
with, labels as they arrived, never before their ``labelled_at``) and every
``FRAUDSTREAM_TREES_REFIT_S`` of event time refits LightGBM trees on them
(:meth:`TreeModel.fit`); the trees go out with the online learner's next
snapshot and score every transaction from then on. Their inputs are the
online learner's: the card's engineered features, the entity features and
the sequence model's logit, so the trees also decide how far to trust the
sequence model (stacking). Until the first refit, the score is the older
rule (:mod:`models.fusion`).

The settings are a conventional, untuned LightGBM setup (shallow trees, a
modest learning rate, row and feature subsampling, fixed seed,
deterministic): the same examples give the same trees.

Example:
    >>> rng = np.random.default_rng(0)
    >>> window = ExampleWindow(("a", "b"), window_ms=10_000, max_examples=1_000)
    >>> for i in range(600):
    ...     x = rng.normal(size=2)
    ...     window.add(x, int(x[0] * x[1] > 0.5), event_time_ms=i)
    >>> trees = TreeModel.fit(window, rounds=30)
    >>> p = trees.predict_matrix(np.array([[2.0, 2.0], [2.0, -2.0]]))
    >>> bool(p[0] > 0.5 > p[1]), trees.examples, trees.version.startswith("trees-600-")
    (True, 600, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["ExampleWindow", "TreeModel", "WindowSnapshot", "earns_its_place"]

#: LightGBM parameters: conventional, not tuned on any test period. ``num_threads`` is set per fit.
PARAMS: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 40,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "seed": 0, "deterministic": True, "force_col_wise": True, "verbosity": -1,
}
#: Boosting rounds of a refit (about 0.2 MB of trees: they travel in every snapshot).
ROUNDS = 100
#: The share of the newest examples that carry an input on trial which :func:`earns_its_place` holds out.
HOLDOUT_SHARE = 0.3
#: Frauds the holdout needs before an input on trial can show it earns its place.
HOLDOUT_MIN_FRAUDS = 20
#: Bootstrap resamples of the holdout, and the share of them the input must win.
_RESAMPLES, _WINS = 100, 0.9


def earns_its_place(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], weight: npt.NDArray[np.float32],
                    times: npt.NDArray[np.int64], j: int, rounds: int = ROUNDS, threads: int = 1) -> bool | None:
    """Do trees with input ``j`` rank the newest examples better than trees without it? None: no evidence yet.

    Stacking the sequence model's logit lets the trees decide how far to trust
    it, but only on examples the sequence model was not trained on (the
    others have ``j`` missing), and those are the newest few days after each
    retraining: trees that split on a handful of them trust the logit at
    random. So the input goes to a trial, as a person would put it: the
    newest :data:`HOLDOUT_SHARE` of the examples that carry it are held out
    (they need :data:`HOLDOUT_MIN_FRAUDS` frauds), trees with and without it
    are fitted on everything older, and it stays only if it raises the
    holdout's average precision (weighted as the window is thinned) in
    nine resamples of the holdout out of ten (a paired bootstrap: an input
    of noise wins about half of them). Time order, not a random split: a
    score is always for traffic newer than its trees. Without the evidence
    (a constant input, too few frauds held out) the answer is None, and
    the input is left out as for a no.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(4_000, 2)).astype(np.float32)
        >>> y = ((x[:, 0] + 0.2 * rng.normal(size=4_000)) > 1.5).astype(np.int8)  # column 0 carries the label
        >>> t, w = np.arange(4_000), np.ones(4_000, np.float32)
        >>> earns_its_place(x, y, w, t, j=0, rounds=30), earns_its_place(x, y, w, t, j=1, rounds=30)
        (True, False)
    """
    import lightgbm as lgb

    from models.ranking import average_precision

    carries = np.flatnonzero(~np.isnan(x[:, j]))
    if not len(carries) or np.ptp(x[carries, j]) == 0:  # nothing to learn from (an engine without the model: 0)
        return None
    cut = np.quantile(times[carries], 1.0 - HOLDOUT_SHARE)
    held = carries[times[carries] >= cut]
    older = times < cut
    if int(y[held].sum()) < HOLDOUT_MIN_FRAUDS or len(np.unique(y[older])) < 2:
        return None
    params = {**PARAMS, "num_threads": threads}
    scores = []
    for keep in (True, False):
        rows = x[older].copy()
        if not keep:
            rows[:, j] = np.nan
        booster = lgb.train(params, lgb.Dataset(rows, label=y[older], weight=weight[older]), num_boost_round=rounds)
        scores.append(booster.predict(x[held], num_threads=1))
    # Paired bootstrap of the holdout: the input stays where it wins in nearly every resample, not by luck.
    rng = np.random.default_rng(0)
    wins = 0
    for _ in range(_RESAMPLES):
        pick = rng.integers(0, len(held), len(held))
        yy, ww = y[held][pick], weight[held][pick]
        with_it, without = (average_precision(yy, score[pick], ww) or 0.0 for score in scores)
        wins += with_it > without
    return wins >= _WINS * _RESAMPLES


class ExampleWindow:
    """The recent labelled examples, bounded by event time and by count.

    ``add`` keeps an example whose transaction is within ``window_ms`` of the
    newest seen. Past ``max_examples`` within the window, the legitimate
    examples are thinned, not the oldest dropped: every other one goes and
    the one kept weighs twice as much (negative downsampling with
    importance weights), so the trees still see every fraud of the whole
    window. Dropping the oldest would shrink the window to a few hours of
    a busy stream (a hundred thousand examples are two hours at a million
    transactions a day) and with it the frauds the trees learn from. Only
    when the frauds alone fill the count do the oldest go. Float32 rows: a
    hundred thousand examples of ~30 inputs take about 12 MB.

    Example:
        >>> w = ExampleWindow(("a",), window_ms=10_000, max_examples=1_000)
        >>> for i in range(3_000):
        ...     w.add([i], int(i % 100 == 0), event_time_ms=i)
        >>> x, y = w.arrays()
        >>> int(y.sum()), len(y) <= 1_000  # every fraud of the window is kept
        (30, True)
        >>> round(float(w.weights()[y == 0].sum()) / 2_970, 2)  # the legitimate ones kept weigh about all 2,970
        1.0
    """

    def __init__(self, feature_names: Sequence[str], window_ms: int, max_examples: int) -> None:
        if window_ms <= 0 or max_examples <= 0:
            raise ValueError(f"window_ms and max_examples must be positive, got {window_ms}, {max_examples}")
        self.feature_names = tuple(feature_names)
        self.window_ms = window_ms
        self.max_examples = max_examples
        self._x = np.zeros((min(max_examples, 1024), len(self.feature_names)), dtype=np.float32)
        self._y = np.zeros(len(self._x), dtype=np.int8)
        self._t = np.zeros(len(self._x), dtype=np.int64)
        self._w = np.ones(len(self._x), dtype=np.float32)  # how many examples each stands for (thinning)
        self._n = 0
        self.newest_ms = 0

    def __len__(self) -> int:
        return self._n

    @property
    def frauds(self) -> int:
        return int(self._y[:self._n].sum())

    def add(self, x: npt.ArrayLike, label: int, event_time_ms: int) -> None:
        """Keep one example (``x`` in :attr:`feature_names` order)."""
        if self._n == len(self._x):
            self._make_room()
        self._x[self._n] = x
        self._y[self._n] = 1 if label else 0
        self._t[self._n] = event_time_ms
        self._w[self._n] = 1.0
        self._n += 1
        self.newest_ms = max(self.newest_ms, event_time_ms)

    def drop_newest(self, k: int) -> None:
        """Forget the ``k`` examples added last (labels a rolled-back learner must not learn from either).

        >>> w = ExampleWindow(("a",), window_ms=100, max_examples=10)
        >>> for i in range(4):
        ...     w.add([i], i % 2, event_time_ms=i * 10)
        >>> w.drop_newest(2); len(w), w.newest_ms
        (2, 10)
        """
        self._n = max(0, self._n - max(k, 0))
        self.newest_ms = int(self._t[:self._n].max()) if self._n else 0

    def _make_room(self) -> None:
        n = self._n
        keep = self._t[:n] >= self.newest_ms - self.window_ms
        if int(keep.sum()) >= self.max_examples:  # over the count: thin the legitimate examples
            legit = np.flatnonzero(keep & (self._y[:n] == 0))
            weight = self._w[legit]
            freed = 0
            # Lightest first, in pairs of equal weight: one of each pair goes and the other weighs for both,
            # so the total stays exact; a class with one row left is not doubled on every call (to infinity).
            for value in np.unique(weight):
                rows = legit[weight == value]
                pairs = rows[:2 * (len(rows) // 2)]
                keep[pairs[1::2]] = False  # the older of each pair stays: the window keeps its span
                self._w[pairs[::2]] *= 2.0
                freed += len(pairs) // 2
                if freed >= self.max_examples // 4:
                    break
        if int(keep.sum()) >= self.max_examples:  # the frauds alone fill it: the oldest go, whatever their time
            keep[:] = False
            keep[np.argsort(self._t[:n], kind="stable")[n - self.max_examples + 1:]] = True
        kept = int(keep.sum())
        size = min(self.max_examples, max(len(self._x), 2 * kept + 1))
        x, y, t = np.zeros((size, self._x.shape[1]), np.float32), np.zeros(size, np.int8), np.zeros(size, np.int64)
        w = np.ones(size, np.float32)
        x[:kept], y[:kept], t[:kept], w[:kept] = (self._x[:n][keep], self._y[:n][keep], self._t[:n][keep],
                                                   self._w[:n][keep])
        self._x, self._y, self._t, self._w, self._n = x, y, t, w, kept

    def arrays(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
        """The examples in the window now (copies: a fit in another thread may read them)."""
        inside = self._inside()
        return self._x[inside], self._y[inside]

    def snapshot(self, before: int | None = None) -> WindowSnapshot:
        """Copies of the examples in the window now, taken in one go: a fit in another thread reads these while
        the loop goes on adding (and thinning) examples.

        ``before``: only the examples of transactions before it, in the
        window that ends there (a refit at a whole refit period of event time
        fits on the same examples however late a straggler arrives). Rows
        come in transaction-time order, not arrival order: LightGBM's bagging
        picks rows by position, so two workers (or two runs) with the same
        examples fit the same trees.

        >>> w = ExampleWindow(("a",), window_ms=100, max_examples=10)
        >>> for t in (30, 10, 20, 40):
        ...     w.add([t], 0, event_time_ms=t)
        >>> s = w.snapshot(before=40); s.times.tolist(), s.newest_ms
        ([10, 20, 30], 40)
        """
        rows = self._inside(before)
        rows = rows[np.lexsort((self._y[rows], self._t[rows]))]
        return WindowSnapshot(self.feature_names, self._x[rows], self._y[rows], self._w[rows], self._t[rows],
                              self.newest_ms if before is None else before)

    def frauds_before(self, before: int) -> int:
        """Frauds among the examples :meth:`snapshot` ``(before)`` would take."""
        return int(self._y[self._inside(before)].sum())

    def weights(self) -> npt.NDArray[np.float32]:
        """How many examples each row of :meth:`arrays` stands for (1, or a power of two once thinned)."""
        return self._w[self._inside()]

    def _inside(self, before: int | None = None) -> npt.NDArray[np.intp]:
        """Rows in the window: the ``window_ms`` up to the newest example, or before ``before``."""
        t = self._t[:self._n]
        if before is None:
            return np.flatnonzero(t >= self.newest_ms - self.window_ms)
        return np.flatnonzero((t >= before - self.window_ms) & (t < before))


class WindowSnapshot(NamedTuple):
    """The examples of an :class:`ExampleWindow` at one moment (:meth:`ExampleWindow.snapshot`)."""

    feature_names: tuple[str, ...]
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int8]
    weights: npt.NDArray[np.float32]
    times: npt.NDArray[np.int64]
    newest_ms: int


class TreeModel:
    """LightGBM trees fitted on an :class:`ExampleWindow`; scores rows in the window's input order."""

    name = "trees"

    def __init__(self, booster: Any, feature_names: Sequence[str], examples: int, frauds: int,
                 fitted_until_ms: int) -> None:
        self.booster = booster
        self.feature_names = tuple(feature_names)
        self.examples = examples
        self.frauds = frauds
        #: The newest transaction time among the examples: the trees know nothing later.
        self.fitted_until_ms = fitted_until_ms
        digest = hashlib.sha256(booster.model_to_string().encode()).hexdigest()[:8]
        self.version = f"trees-{examples}-{digest}"
        #: Whether the input on trial earned its place at this fit (None: none on trial, or no evidence either way).
        self.verdict: bool | None = None

    @classmethod
    def fit(cls, window: ExampleWindow | WindowSnapshot, rounds: int = ROUNDS, threads: int = 1,
            must_earn: str | None = None, earned: bool | None = None) -> TreeModel:
        """Trees on the window's examples (now, or as snapshotted); ``ValueError`` without both classes among them.

        ``must_earn``: an input the trees may split on only where it earned
        its place (:func:`earns_its_place`, or ``earned`` where the caller
        has a recent verdict); otherwise its column is left missing and the
        trees never read it (:attr:`ignored`). :attr:`verdict` is the trial's
        outcome (None without one).
        """
        import lightgbm as lgb

        snap = window.snapshot() if isinstance(window, ExampleWindow) else window
        x, y, weight = snap.x.copy(), snap.y, snap.weights
        frauds = int(y.sum())
        if frauds == 0 or frauds == len(y):
            raise ValueError(f"need fraud and legitimate examples to fit trees, got {frauds} of {len(y)}")
        params = {**PARAMS, "num_threads": threads}
        names = list(_safe(snap.feature_names))
        verdict = None
        if must_earn is not None and must_earn in snap.feature_names:
            j = snap.feature_names.index(must_earn)
            verdict = earned if earned is not None else earns_its_place(x, y, weight, snap.times, j, rounds=rounds,
                                                                        threads=threads)
            if not verdict:
                x[:, j] = np.nan
        booster = lgb.train(params, lgb.Dataset(x, label=y, weight=weight, feature_name=names, free_raw_data=True),
                            num_boost_round=rounds)
        trees = cls(booster, snap.feature_names, len(y), frauds, snap.newest_ms)
        trees.verdict = verdict
        return trees

    @property
    def ignored(self) -> tuple[str, ...]:
        """Inputs no tree splits on (a constant, or an input that did not earn its place): they change no score."""
        used = self.booster.feature_importance(importance_type="split")
        return tuple(name for name, n in zip(self.feature_names, used, strict=True) if n == 0)

    def predict_matrix(self, matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(fraud) of each row (columns in :attr:`feature_names` order)."""
        rows = np.asarray(matrix, dtype=np.float64)
        if not len(rows):
            return np.zeros(0)
        return np.asarray(self.booster.predict(rows, num_threads=1), dtype=np.float64)

    def contributions(self, matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Each input's additive share of each row's log-odds (TreeSHAP), ``[B, len(feature_names)]``.

        Exact for the trees: the shares and the trees' base value add up to the
        row's log-odds, so a reason given from them pushed this score up.
        """
        rows = np.asarray(matrix, dtype=np.float64)
        out = np.asarray(self.booster.predict(rows, pred_contrib=True, num_threads=1), dtype=np.float64)
        return out[:, :len(self.feature_names)]


def _safe(names: Sequence[str]) -> list[str]:
    """Feature names LightGBM accepts (it refuses JSON special characters)."""
    return ["".join(c if c.isalnum() or c == "_" else "_" for c in name) for name in names]
