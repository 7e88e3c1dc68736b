"""Offline baselines: what a fraud team gets from a classic model trained once on the same history.

Two feature families, both computed in event time as a stream would see them:

* the card's engineered features from :mod:`models.features`, each card's
  history replayed in event-time order exactly as the engine does
  (:func:`feature_matrix`);
* per-terminal window features (:func:`terminal_features`): how busy the
  terminal (``merchant_id``) was, and how much confirmed fraud it had, as
  *known* at the transaction's time: a label counts from its ``labelled_at``
  (the transaction's time plus the label delay), never earlier.

Two models are trained once on the training period and score the test
period: ``baseline_lr``, a class-weighted L2 logistic regression (full-batch
L-BFGS in torch, :func:`fit_predict`), and ``baseline_gbt``, gradient-boosted
trees from LightGBM (:func:`fit_predict_gbt`).

Example:
    >>> from replay.generate import GeneratorConfig, generate
    >>> table = generate(GeneratorConfig(seed=3, n_transactions=20_000, n_cards=500, n_merchants=200, days=10))
    >>> x = feature_matrix(table)
    >>> x.shape
    (20000, 18)
    >>> terminal_features(table, label_delay_ms=7 * 86_400_000).shape
    (20000, 9)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch

from models.features import FEATURE_NAMES, engineered_batch
from models.history import History, advance, new_history
from stream.contracts.records import Transaction

__all__ = [
    "TERMINAL_FEATURE_NAMES",
    "TERMINAL_WINDOWS_DAYS",
    "feature_matrix",
    "fit_predict",
    "fit_predict_gbt",
    "terminal_feature_names",
    "terminal_features",
]

_CHUNK = 4096  # transactions per engineered_batch call
_DAY_MS = 86_400_000
TERMINAL_WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)


def terminal_feature_names(windows_days: Sequence[int] = TERMINAL_WINDOWS_DAYS) -> tuple[str, ...]:
    """Column names of :func:`terminal_features`, three per window.

    >>> terminal_feature_names([7])
    ('terminal_n_7d', 'terminal_known_fraud_7d', 'terminal_known_risk_7d')
    """
    return tuple(f"terminal_{what}_{d}d" for d in windows_days for what in ("n", "known_fraud", "known_risk"))


TERMINAL_FEATURE_NAMES = terminal_feature_names()


def feature_matrix(table: pa.Table, history_length: int = 32) -> npt.NDArray[np.float64]:
    """Engineered features of every row, histories replayed in event-time order."""
    cols = {name: table[name].to_pylist() for name in
            ("transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id", "mcc", "country",
             "channel")}
    order = np.argsort(np.asarray(cols["timestamp"], dtype=np.int64), kind="stable")
    out = np.zeros((table.num_rows, len(FEATURE_NAMES)))
    histories: dict[str, History] = {}
    rows: list[int] = []
    priors: list[History] = []
    transactions: list[Transaction] = []

    def flush() -> None:
        # In chunks, as the engine batches them (a row does not depend on its batch): a prior history
        # is kept only until its chunk is computed.
        if rows:
            out[rows] = engineered_batch(priors, transactions)
            rows.clear()
            priors.clear()
            transactions.clear()

    for i in order.tolist():
        t = Transaction(str(cols["transaction_id"][i]), str(cols["card_id"][i]), int(cols["timestamp"][i]),
                        float(cols["amount"][i]), str(cols["currency"][i]), str(cols["merchant_id"][i]),
                        str(cols["mcc"][i]), str(cols["country"][i]), str(cols["channel"][i]))
        prior, histories[t.card_id] = advance(histories.get(t.card_id, new_history()), t, history_length)
        rows.append(i)
        priors.append(prior)
        transactions.append(t)
        if len(rows) == _CHUNK:
            flush()
    flush()
    return out


def terminal_features(table: pa.Table, label_delay_ms: int,
                      windows_days: Sequence[int] = TERMINAL_WINDOWS_DAYS) -> npt.NDArray[np.float64]:
    """Per-terminal window features of every row, as known at the row's time; rows in table order.

    For a transaction at time ``t`` on terminal ``merchant_id`` and each window
    of ``w`` days, over the terminal's transactions at times ``s < t`` (a
    transaction at the same millisecond is not "earlier"):

    * ``terminal_n_{w}d``: how many with ``s`` in ``(t - w, t)``;
    * ``terminal_known_fraud_{w}d``: how many frauds whose label arrived in
      the last ``w``: ``labelled_at = s + label_delay_ms`` in ``(t - w, t]``.
      A label counts from its ``labelled_at`` exactly, never a millisecond
      earlier. With a constant delay ``d`` this is the Fraud-Detection-Handbook's
      terminal risk window, transactions in ``(t - d - w, t - d]``;
    * ``terminal_known_risk_{w}d``: that count over the number of labelled
      transactions in the same range (0 when there are none).

    Needs columns ``merchant_id``, ``timestamp`` (epoch ms) and ``is_fraud``.
    Vectorised: one sort by (terminal, time) and binary searches, no loop over rows.

    >>> day = 86_400_000
    >>> t = pa.table({"merchant_id": ["m", "m", "m"], "timestamp": [0, day, 5 * day // 2], "is_fraud": [1, 0, 0]})
    >>> terminal_features(t, label_delay_ms=day, windows_days=[2]).tolist()  # n, known fraud, known risk
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.5]]
    """
    if label_delay_ms < 0:
        raise ValueError(f"label_delay_ms must be >= 0, got {label_delay_ms}")
    out = np.zeros((table.num_rows, 3 * len(windows_days)))
    if table.num_rows == 0:
        return out
    _, terminal = np.unique(np.asarray(table["merchant_id"].to_numpy(zero_copy_only=False)), return_inverse=True)
    ts = np.asarray(table["timestamp"].to_numpy(zero_copy_only=False), dtype=np.int64)
    fraud = np.asarray(table["is_fraud"].to_numpy(zero_copy_only=False)).astype(np.int64)
    rel = ts - ts.min()
    widths = [int(d) * _DAY_MS for d in windows_days]
    # One sorted key per row, terminal-major: every search below stays inside the row's own terminal, since a
    # query reaches back at most max(widths) + delay, less than the gap between two terminals' key ranges.
    span = int(rel.max()) + max(widths, default=0) + label_delay_ms + 2
    order = np.lexsort((rel, terminal))
    key = terminal[order].astype(np.int64) * span + rel[order]
    frauds_before = np.concatenate([[0], np.cumsum(fraud[order])])
    query = terminal.astype(np.int64) * span + rel
    now = np.searchsorted(key, query, side="left")  # rows strictly earlier than t
    # Labelled by t: s + delay <= t and s < t, so s <= t - max(delay, 1 ms).
    known_to = np.searchsorted(key, query - max(label_delay_ms, 1), side="right")
    for i, width in enumerate(widths):
        count = now - np.searchsorted(key, query - width, side="right")  # s > t - w
        known_from = np.minimum(np.searchsorted(key, query - label_delay_ms - width, side="right"), known_to)
        labelled = known_to - known_from
        known_fraud = frauds_before[known_to] - frauds_before[known_from]
        out[:, 3 * i] = count
        out[:, 3 * i + 1] = known_fraud
        out[:, 3 * i + 2] = np.divide(known_fraud, labelled, out=np.zeros(len(labelled)), where=labelled > 0)
    return out


def fit_predict(x_train: npt.NDArray[np.float64], y_train: npt.NDArray[np.int_], x_test: npt.NDArray[np.float64],
                l2: float = 1e-3, seed: int = 0) -> npt.NDArray[np.float64]:
    """Fraud probabilities for ``x_test`` from a class-weighted logistic regression."""
    torch.manual_seed(seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y_train, dtype=torch.float64)
    pos = max(float(yt.sum()), 1.0)
    weight = torch.where(yt > 0, (len(yt) - pos) / pos, 1.0)
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt, weight=weight)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        z = torch.tensor((x_test - mean) / std, dtype=torch.float64) @ w + b
    return torch.sigmoid(z).numpy()


def fit_predict_gbt(x_train: npt.NDArray[np.float64], y_train: npt.NDArray[np.int_], x_test: npt.NDArray[np.float64],
                    seed: int = 0, rounds: int = 300, threads: int = 0) -> npt.NDArray[np.float64]:
    """Fraud probabilities for ``x_test`` from LightGBM gradient-boosted trees.

    Plain log loss (no class weights: they would distort the probabilities
    and do not change the ranking much), shallow-ish trees, a small learning
    rate and row/feature subsampling: a strong, conventional setting, not one
    tuned on the test period. ``threads=0`` lets LightGBM use every core.
    Deterministic for a given ``seed`` and thread count.
    """
    import lightgbm as lgb  # imported here: only the experiment and its tests need it

    params = {
        "objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 40,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
        "seed": seed, "deterministic": True, "force_col_wise": True, "num_threads": threads, "verbosity": -1,
    }
    model = lgb.train(params, lgb.Dataset(x_train, label=y_train), num_boost_round=rounds)
    return np.asarray(model.predict(x_test), dtype=np.float64)
