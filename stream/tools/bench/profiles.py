"""What an entity profile costs a transaction: its features, then counting it, for a quiet and a busy entity.

``python -m stream.tools.bench.profiles``: a month of traffic at 1, 20 and 200
transactions an hour (3,000 cards, 1 % of transactions labelled fraud a
second later), timing the last day's calls. One entity stage call per
transaction and entity kind is what the entity stage adds to a transaction.

Example:
    >>> feature_us, observe_us = cost(per_hour=2, hours=30)
    >>> feature_us > 0 and observe_us > 0
    True
"""

from __future__ import annotations

import argparse
import random
import time

from models.profile import HOUR_MS, EntityProfile
from models.profile_features import profile_features

__all__ = ["cost", "main"]


def cost(per_hour: int, hours: int = 24 * 31, cards: int = 3000, seed: int = 1) -> tuple[float, float]:
    """Mean µs of ``profile_features`` and of ``observe`` over the last day of ``hours`` of traffic."""
    rng = random.Random(seed)
    profile = EntityProfile()
    position, n, features_s, observe_s = 0, 0, 0.0, 0.0
    step = HOUR_MS // per_hour
    for hour in range(hours):
        for k in range(per_hour):
            at = hour * HOUR_MS + k * step
            card = f"c{rng.randrange(cards)}"
            t0 = time.perf_counter()
            profile_features(profile, at, card=card)
            t1 = time.perf_counter()
            profile.observe(at, 10.0, card=card, source=position % 16, offset=position)
            t2 = time.perf_counter()
            position += 1
            if rng.random() < 0.01:
                profile.label(f"x{position}", at, labelled_at_ms=at + 1000, fraud=True)
                position += 1
            if hour >= hours - 24:
                features_s, observe_s, n = features_s + t1 - t0, observe_s + t2 - t1, n + 1
    return 1e6 * features_s / n, 1e6 * observe_s / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.tools.bench.profiles", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[1, 20, 200], help="transactions an hour")
    args = parser.parse_args(argv)
    for per_hour in args.rates:
        features_us, observe_us = cost(per_hour)
        print(f"{per_hour:5d} tx/h: features {features_us:7.1f} µs, observe {observe_us:6.1f} µs a transaction")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
