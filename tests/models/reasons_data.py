"""Generated traffic with the inputs the engine would score it with, for the tests of alert reasons.

The generator's table (:mod:`replay.generate`, the five fraud scenarios), each
card's prior history as the engine chains it, the card's engineered features,
the terminals' profile features (every transaction's label known ``LABEL_DELAY_MS``
after it, as the replay tool sends them) and a sequence logit of 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import engineered_batch
from models.history import History, advance, new_history
from models.online import online_inputs
from models.profile_fold import fold_entity_features
from replay.generate import GeneratorConfig, generate
from stream.contracts.records import Transaction

DAY_MS = 86_400_000
LABEL_DELAY_MS = 2 * DAY_MS
#: The inputs: the card's features, the terminal's, the sequence logit (as online_inputs orders them).
NAMES = online_inputs(["merchant_id"])


@dataclass
class Traffic:
    columns: dict[str, list[Any]]
    transactions: list[Transaction]
    priors: list[History]  # each row's card history before it
    inputs: npt.NDArray[np.float64]  # [rows, len(NAMES)]
    ts: npt.NDArray[np.int64]
    fraud: npt.NDArray[np.int64]
    scenario: npt.NDArray[np.str_]

    def features(self, row: int) -> dict[str, float]:
        return dict(zip(NAMES, self.inputs[row].tolist(), strict=True))


def traffic(n_transactions: int = 40_000, seed: int = 3) -> Traffic:
    """About 3 s for 40,000 rows; 3 % fraud so the smaller scenarios have rows enough to learn and alert on."""
    cfg = GeneratorConfig(seed=seed, n_transactions=n_transactions, n_cards=1_500, n_merchants=300, days=30,
                          fraud_rate=0.03, fraud_rate_bounds=(0.0, 0.05))
    cols = generate(cfg).to_pydict()
    n = len(cols["transaction_id"])
    txs = [Transaction(cols["transaction_id"][i], cols["card_id"][i], cols["timestamp"][i], cols["amount"][i],
                       cols["currency"][i], cols["merchant_id"][i], cols["mcc"][i], cols["country"][i],
                       cols["channel"][i]) for i in range(n)]
    histories: dict[str, History] = {}
    priors: list[History] = []
    for t in txs:  # rows are in event-time order
        prior, histories[t.card_id] = advance(histories.get(t.card_id, new_history()), t, 32)
        priors.append(prior)
    card = np.vstack([engineered_batch(priors[i:i + 4096], txs[i:i + 4096]) for i in range(0, n, 4096)])
    ts = np.asarray(cols["timestamp"], dtype=np.int64)
    fraud = np.asarray(cols["is_fraud"], dtype=np.int64)
    labels = [(i, int(ts[i]) + LABEL_DELAY_MS, bool(fraud[i])) for i in range(n)]
    terminal = fold_entity_features(cols["merchant_id"], cols["card_id"], cols["timestamp"], cols["amount"], labels)
    inputs = np.hstack([card, terminal, np.zeros((n, 1))])
    return Traffic(cols, txs, priors, inputs, ts, fraud, np.asarray(cols["scenario"]))
