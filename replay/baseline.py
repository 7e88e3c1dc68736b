"""A batch logistic-regression baseline on the engine's engineered features.

The features are computed by :mod:`models.features`, replaying each card's
history in event-time order exactly as the stream does, so the baseline and
the online learner see the same inputs. It is trained once on the training
period (class-weighted, L2, full-batch L-BFGS in torch) and scores the test
period: what a team would get from a classic offline model on the same data.

Example:
    >>> from replay.generate import GeneratorConfig, generate
    >>> table = generate(GeneratorConfig(seed=3, n_transactions=20_000, n_cards=500, n_merchants=200, days=10))
    >>> x = feature_matrix(table)
    >>> x.shape
    (20000, 18)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch

from models.features import FEATURE_NAMES, engineered_batch
from models.history import History, advance, new_history
from stream.records import Transaction

__all__ = ["feature_matrix", "fit_predict"]

_CHUNK = 4096  # transactions per engineered_batch call


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
