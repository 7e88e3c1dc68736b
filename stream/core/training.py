"""The trainer's step: labelled examples in, a learned model, a signed snapshot and reports out.

Each worker's learn agent forwards joined labels to a one-partition topic, so
exactly one worker at a time owns the learner (:mod:`stream.runtime.agents.train`
drives this class from that partition). Per example, in offset order:

* an example at or before the offset the learner's snapshot already includes
  is skipped (a new owner starts from the latest snapshot: nothing is learned
  twice or lost across a crash);
* an unreadable example is reported (``bad_labelled_example`` on the ops
  topic) and skipped: only the engine's own learn agents write that topic;
* the per-source cap (:class:`~stream.core.caps.SourceCap`) may refuse it: a
  ``source_rate_limited`` dead letter, and ``label_source_capped`` on the ops
  topic at the 1st, 100th and 10,000th refusal of a source;
* otherwise the learner predicts it first (the prequential test the quality
  guard watches) and then learns it; on a guard alarm the learner rolls back
  to the last good snapshot (``online_model_rollback``);
* an example of a transaction from the period the sequence model was trained
  on (at or before ``sequence_trained_until()``) is learned without its
  ``sequence_logit``: 0 for the online learner (as with no sequence model),
  missing for the trees. On its own training data the sequence model is
  right far more often than on new traffic; stacked on those logits, the
  learner and the trees would trust it far beyond what it earns afterwards
  (the fused score fell below the online learner's alone). So they learn how
  far to trust it only from transactions it never saw.

After a step that consumed anything it seals a snapshot (``seq``, the offset
of the last example it includes, whether the guard judged it good).

With a :class:`TreeSchedule` it also keeps each learned example in an
:class:`~models.trees.ExampleWindow` and says when the fused score's trees
are due for a refit (``refit_due``): at each whole multiple of ``refit_ms``
of the labelled transactions' time, on the examples of the transactions
before it, once those hold ``min_frauds`` frauds, and after a takeover only once it
holds at least half the examples the current trees were fitted on (a new
owner's window starts empty; trees fitted on a few hours would be worse than
the ones it has). A whole period passed without a refit is reported on the
ops topic (``trees_refit_skipped``, with the reason). The caller fits (:meth:`OnlineTraining.fit_trees`, in a
thread: it reads a copy) and installs them (:meth:`OnlineTraining.install_trees`,
which seals the snapshot that carries them).

Example:
    >>> from models.online import OnlineLearner
    >>> from stream.core.stored import LabelledExample, SourceMessage
    >>> training = OnlineTraining(b"0123456789abcdef", cap_per_hour=1000)
    >>> training.take_over(None, OnlineLearner())
    >>> origin = SourceMessage("feedback", 0, 0, b"c1", b"{}")
    >>> x = [0.0] * len(training.learner.feature_names)
    >>> step = training.step([(0, LabelledExample(x, 1, "analyst", 1_000, origin).encode()), (1, b"junk")])
    >>> step.learned, [r["type"] for r in step.ops], step.snapshot is not None, training.applied_offset
    (1, ['bad_labelled_example'], True, 1)
    >>> training.step([(1, b"junk")]).snapshot is None  # already included: nothing to publish
    True
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.guard import QualityGuard
from models.online import SEQUENCE_INPUT, OnlineLearner, online_inputs
from models.snapshot import seal, seal_trees, unseal
from models.trees import ExampleWindow, TreeModel
from stream.contracts.dlq import DeadLetter
from stream.core.caps import SourceCap
from stream.core.packing import unpack_inputs
from stream.core.stored import LabelledExample, StoredRecordError

__all__ = ["OnlineTraining", "TrainingStep", "TreeSchedule"]

log = logging.getLogger("fraudstream.train")

#: How far the examples that carry the sequence logit must have changed (a share) before it is tried again.
TRIAL_AGAIN = 0.25
#: Refusals of one source at which the cap is reported on the ops topic (not every one: no flood).
_CAP_REPORTS = (1, 100, 10_000)


@dataclass
class TrainingStep:
    """What one step caused, for the caller to send."""

    #: Operational records for the ops topic (``type``: ``bad_labelled_example``, ``label_source_capped``,
    #: ``online_model_rollback``, ``trees_refit_skipped``).
    ops: list[dict[str, Any]] = field(default_factory=list)
    #: Labels refused by the source cap, for the feedback DLQ.
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: The signed snapshot to publish, if the step consumed anything.
    snapshot: bytes | None = None
    learned: int = 0
    capped: int = 0
    rollbacks: int = 0
    #: Examples learned without their sequence logit (from the sequence model's training period).
    sequence_masked: int = 0
    #: The fused score's trees are due for a refit (:meth:`OnlineTraining.fit_trees`).
    refit_due: bool = False


@dataclass(frozen=True)
class TreeSchedule:
    """When the trees are refit and on what (``FRAUDSTREAM_TREES_*``)."""

    refit_ms: int
    window_ms: int
    max_examples: int
    min_frauds: int

    def period(self, ms: int) -> int:
        """The start of the refit period ``ms`` falls in.

        >>> TreeSchedule(refit_ms=10, window_ms=100, max_examples=1, min_frauds=1).period(37)
        30
        """
        return ms // self.refit_ms * self.refit_ms


class OnlineTraining:
    """Owns the single online learner while this worker holds the labelled partition."""

    def __init__(self, key: bytes, cap_per_hour: int, window: int = 1000, delta: float = 0.002,
                 min_labels: int = 200, max_auc_drop: float = 0.05, trees: TreeSchedule | None = None,
                 sequence_trained_until: Callable[[], int | None] = lambda: None) -> None:
        self.key = key
        #: Event time up to which the sequence model in force saw the transactions in training (None: unknown).
        self.sequence_trained_until = sequence_trained_until
        self.trees = trees
        #: The examples the trees are fitted on (while this worker owns the learner).
        self.examples: ExampleWindow | None = None
        #: Examples kept since the last snapshot the guard judged good (dropped again on a rollback).
        self._since_good = 0
        #: The sequence logit's last verdict: (the sequence model's trained_until, examples that carried it, verdict).
        self._trial: tuple[int | None, int, bool] | None = None
        #: Examples kept with the sequence logit since that verdict.
        self._carrying_added = 0
        #: Where the refit due after the last step ends (:meth:`_refit_due`); None: none due (a fit of everything).
        self._refit_before: int | None = None
        #: The whole refit period the examples have reached (reported once passed: :meth:`_passing`).
        self._passed: int | None = None
        #: What the trial of the fit under way judged on: (trained_until, examples carrying the logit, added).
        self._pending_trial: tuple[int | None, int, int] | None = None
        self.guard = QualityGuard(window=window, delta=delta, min_labels=min_labels, max_auc_drop=max_auc_drop)
        self.cap = SourceCap(cap_per_hour)
        self.learner: OnlineLearner | None = None
        self.seq = 0
        self.applied_offset = -1
        self.last_good: bytes | None = None

    def take_over(self, latest_blob: bytes | None, fallback: OnlineLearner) -> None:
        """Start from the newest verified snapshot, or from a copy of ``fallback`` (the scoring model).

        The snapshot does not carry its trees (:func:`models.snapshot.seal`):
        they are ``fallback``'s when they are the version it names (the
        worker's model sync attached them).
        """
        if latest_blob is not None:
            self.learner, meta = unseal(latest_blob, self.key)
            if fallback.trees is not None and fallback.trees.version == meta.get("trees"):
                self.learner.trees = fallback.trees
            self.seq = int(meta.get("seq", 0))
            self.applied_offset = int(meta.get("offset", -1))
            self.last_good = latest_blob if meta.get("good") else None
            if meta.get("baseline_auc") is not None:
                self.guard.baseline_auc = float(meta["baseline_auc"])
        else:
            # A copy: the scoring model changes only when a snapshot is installed.
            self.learner = copy.deepcopy(fallback)
        if self.trees is not None:
            self.examples = ExampleWindow(self.learner.feature_names, self.trees.window_ms, self.trees.max_examples)
        self._passed = self.learner.trees.fitted_until_ms if self.learner.trees is not None else None
        log.info("trainer owns the online learner: seq %d, %d labels, resuming after offset %d",
                 self.seq, self.learner.n_labels, self.applied_offset)

    def release(self) -> None:
        """The partition went elsewhere: whoever owns it next starts from the published snapshot."""
        self.learner = None
        self.examples = None

    def fit_trees(self) -> TreeModel:
        """Trees on the kept examples now (:meth:`trees_job`, run here)."""
        trees = self.trees_job()()
        self._record_trial(trees)
        return trees

    def trees_job(self) -> Callable[[], TreeModel]:
        """A fit of trees on a snapshot of the kept examples taken now, to run in another thread.

        The snapshot is taken here, on the caller's thread: the loop goes on
        adding (and thinning) examples while the fit runs. The sequence logit
        is put on trial again (:func:`models.trees.earns_its_place`, two more
        fits) only when a new sequence model is in force or the examples
        added with its logit since the last verdict are :data:`TRIAL_AGAIN`
        of those it judged on: a refit's cost is what holds refits back in a
        replay. A trial without evidence (too few frauds yet) leaves the logit
        out and is run again at the next refit. The verdict is kept when the
        trees are installed (:meth:`install_trees`, on the loop's thread).
        """
        window = self.examples
        if window is None:
            raise RuntimeError("no example window: take_over() with a TreeSchedule first")
        snap = window.snapshot(before=self._refit_before)
        trained_until = self.sequence_trained_until()
        last = self._trial
        earned: bool | None = None
        if last is not None and last[0] == trained_until and self._carrying_added < TRIAL_AGAIN * max(last[1], 1):
            earned = last[2]
            self._pending_trial = None
        else:
            carrying = int(np.count_nonzero(~np.isnan(snap.x[:, snap.feature_names.index(SEQUENCE_INPUT)]))) \
                if SEQUENCE_INPUT in snap.feature_names else 0
            self._pending_trial = (trained_until, carrying, self._carrying_added)

        def fit() -> TreeModel:
            return TreeModel.fit(snap, must_earn=SEQUENCE_INPUT, earned=earned)

        return fit

    def _record_trial(self, trees: TreeModel) -> None:
        pending, self._pending_trial = self._pending_trial, None
        if pending is not None and trees.verdict is not None:
            trained_until, carrying, added = pending
            self._trial = (trained_until, carrying, trees.verdict)
            self._carrying_added -= added  # those added since the snapshot count towards the next trial

    def install_trees(self, trees: TreeModel) -> tuple[bytes, bytes]:
        """Score with ``trees`` from now on: the signed trees, then the snapshot that names them, to publish in that order."""
        if self.learner is None:
            raise RuntimeError("take_over() first: the trainer does not own a learner")
        self._record_trial(trees)
        self.learner.trees = trees
        return seal_trees(trees, self.key), self._seal()

    def _refit_due(self) -> tuple[int | None, str]:
        """The whole refit period of event time the trees are due to be fitted up to (or None, and why not).

        Refits fall on whole multiples of ``refit_ms`` (with a day: midnight
        UTC) of the labelled transactions' time, each on the examples of the
        transactions before it: the same trees for the same history, however
        fast it is replayed and whichever worker owns the learner.
        """
        examples, schedule, learner = self.examples, self.trees, self.learner
        if examples is None or schedule is None or learner is None or schedule.refit_ms <= 0:
            return None, "no_trees"
        boundary = schedule.period(examples.newest_ms)
        current = learner.trees
        if current is not None and boundary <= current.fitted_until_ms:
            return None, "fitted"
        if current is not None and len(examples) < current.examples // 2:
            return None, "window_after_takeover"
        if examples.frauds_before(boundary) < schedule.min_frauds:
            return None, "too_few_frauds"
        return boundary, ""

    def refit_due(self) -> bool:
        """Are the trees due for a refit now (asked again after :meth:`install_trees`: a step's ``refit_due`` was
        computed before the trees it was waiting for were installed)?"""
        self._refit_before, _ = self._refit_due()
        return self._refit_before is not None

    def _passing(self, out: TrainingStep, reason: str) -> None:
        """Report a whole refit period passed without a refit (``trees_refit_skipped``, ``reason`` from
        :meth:`_refit_due`), so a replay holding for one (:mod:`replay.refits`) knows none is coming."""
        examples, schedule = self.examples, self.trees
        if examples is None or schedule is None or schedule.refit_ms <= 0 or not len(examples):
            return
        boundary = schedule.period(examples.newest_ms)
        if self._passed is not None and boundary > self._passed and self._refit_before is None:
            out.ops.append({"type": "trees_refit_skipped", "until_ms": boundary, "reason": reason,
                            "frauds": examples.frauds_before(boundary), "min_frauds": schedule.min_frauds})
        if self._passed is None or boundary > self._passed:
            self._passed = boundary

    def step(self, examples: Sequence[tuple[int, bytes | None]]) -> TrainingStep:
        """Learn ``(offset, record value)`` pairs of the labelled topic, in offset order."""
        if self.learner is None:
            raise RuntimeError("take_over() first: the trainer does not own a learner")
        out = TrainingStep()
        start_offset = last_offset = self.applied_offset
        trained_until = self.sequence_trained_until()
        for offset, value in examples:
            if offset <= self.applied_offset:
                continue  # already inside the snapshot this learner started from
            last_offset = max(last_offset, offset)
            try:
                ex = LabelledExample.decode(value)
                # unpack_inputs: a learn agent on another build (rolling upgrade, rollback) may forward an
                # entry packed or as a list.
                x = dict(zip(_stored_names(self.learner.feature_names, len(vector := unpack_inputs(ex.inputs))),
                             vector, strict=True))
            except (StoredRecordError, ValueError, TypeError) as exc:
                # Only our own learn agents write this topic; a bad record is a bug or a foreign writer.
                log.error("unusable labelled example at offset %d: %r", offset, exc)
                out.ops.append({"type": "bad_labelled_example", "offset": offset, "error": repr(exc)})
                continue
            if not self.cap.allow(ex.source, ex.event_time_ms):
                self._capped(ex, out)
                continue
            in_sample = trained_until is not None and ex.event_time_ms <= trained_until and SEQUENCE_INPUT in x
            if in_sample:
                x[SEQUENCE_INPUT] = 0.0
                out.sequence_masked += 1
            p = float(self.learner.predict_many([x])[0])
            if self.guard.update(ex.label, p):
                self._roll_back(out)
            self.learner.learn(x, ex.label)
            out.learned += 1
            if self.examples is not None:
                row = self.learner.vector(x)
                if in_sample:
                    row[self.learner.feature_names.index(SEQUENCE_INPUT)] = math.nan
                elif SEQUENCE_INPUT in x:
                    self._carrying_added += 1
                self.examples.add(row, ex.label, ex.event_time_ms)
                if self._passed is None and self.trees is not None and self.trees.refit_ms > 0:
                    # The first example's period is passed without a report (:meth:`_passing`), as a replay's
                    # first label's is (replay/refits.py); a step that spans the next one reports it.
                    self._passed = self.trees.period(ex.event_time_ms)
                self._since_good += 1
        self.applied_offset = last_offset
        if last_offset > start_offset:
            out.snapshot = self._seal()
        self._refit_before, reason = self._refit_due()
        out.refit_due = self._refit_before is not None
        self._passing(out, reason)
        return out

    def _seal(self) -> bytes:
        learner = self.learner
        assert learner is not None
        self.seq += 1
        healthy = self.guard.healthy()
        if healthy:
            self.guard.mark_good()
        meta = {"seq": self.seq, "offset": self.applied_offset, "good": healthy,
                "baseline_auc": self.guard.baseline_auc, "guard": self.guard.state()}
        learner.snapshot_seq = self.seq
        blob = seal(learner, self.key, meta)
        if healthy:
            self.last_good = blob
            self._since_good = 0
        return blob

    def _roll_back(self, out: TrainingStep) -> None:
        state = self.guard.state()
        before = self.learner.version if self.learner else "?"
        if self.last_good is not None:
            trees = self.learner.trees if self.learner else None
            self.learner, meta = unseal(self.last_good, self.key)
            self.learner.trees = trees  # not in the snapshot; the next refit leaves out what was rolled back
            target = f"snapshot seq {meta.get('seq')}"
        else:
            target = "no good snapshot yet: kept learning"
        self.guard.reset()
        if self.examples is not None:  # the trees must not learn what the learner was rolled back from
            self.examples.drop_newest(self._since_good)
            self._since_good = 0
        out.rollbacks += 1
        log.error("online model quality dropped (%s); rolled back from %s to %s", state, before, target)
        out.ops.append({"type": "online_model_rollback", "reason": "rolling AUC dropped and ADWIN detected a rise in "
                        "error", "guard": state, "from_version": before, "to": target})

    def _capped(self, ex: LabelledExample, out: TrainingStep) -> None:
        o = ex.origin
        out.capped += 1
        out.dead_letters.append(DeadLetter(
            "source_rate_limited", f"source {ex.source!r} exceeded {self.cap.max_per_hour} labels per event hour",
            o.topic, o.partition, o.offset, o.key, o.value))
        rejected = self.cap.rejected[ex.source]
        if rejected in _CAP_REPORTS:
            out.ops.append({"type": "label_source_capped", "source": ex.source, "rejected_so_far": rejected})


def _stored_names(names: tuple[str, ...], n: int) -> tuple[str, ...]:
    """The names of a stored vector of ``n`` inputs: the learner's, or those of a learner without entity inputs.

    A vector scored before the deployment profiled entities (or by a worker
    still on such a learner) has the inputs every learner has; its entity
    inputs are learned as 0. Any other count raises, as a foreign record.

    >>> from models.online import online_inputs
    >>> _stored_names(online_inputs(["ip"]), len(online_inputs())) == online_inputs()
    True
    """
    if n != len(names) and n == len(base := online_inputs()):
        return base
    return names

