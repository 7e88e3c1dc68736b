"""Attention-based sequence model over a card's recent transactions.

:class:`SequenceModel` embeds every step of the window (a linear map of the
standardised numeric features plus one embedding per categorical bucket plus
a recency embedding), runs a small transformer encoder with a key padding
mask and reads the fraud logit out at the last step, the transaction being
scored. Recency embeddings count back from the scored step, so extra left
padding does not change the output.

:class:`SequenceScorer` is the :class:`~models.scoring.Scorer` the worker
uses: one forward pass per micro-batch under ``torch.inference_mode()``, in
float32 or, where the CPU has native bfloat16 (AMX, AVX512-BF16), optionally
with the encoder's matrix products in bfloat16 (``precision="bfloat16"``:
faster, logits within a few thousandths of float32's; docs/benchmark-history.md,
*bfloat16*).
:meth:`SequenceScorer.explain` attributes the logit to steps and features by
gradient x input.

Example:
    >>> from models.features import engineered_batch
    >>> from models.history import append, new_history
    >>> from models.scoring import ScoringItem
    >>> from stream.contracts.records import Transaction
    >>> _ = torch.manual_seed(0)
    >>> scorer = SequenceScorer(SequenceModel(StepSpec(n=8)), version="seq-demo")
    >>> t1 = Transaction("t1", "c1", 1_740_830_400_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 1_740_830_460_000, 900.0, "EUR", "m2", "5732", "BR", "ecom")
    >>> priors = [new_history(), append(new_history(), t1, 32)]
    >>> items = [ScoringItem(t, h, x) for t, h, x in zip([t1, t2], priors, engineered_batch(priors, [t1, t2]))]
    >>> p = scorer.score_batch(items)
    >>> p.shape, bool(((p > 0) & (p < 1)).all()), scorer.version
    ((2,), True, 'seq-demo')
    >>> reasons = scorer.explain(items[1:], steps=1, features=2)[0]
    >>> len(reasons) <= 3 and {r["kind"] for r in reasons} <= {"step", "feature"}
    True
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.attention import encoder_layer
from models.scoring import ScoringItem
from models.sequence_reasons import reasons
from models.steps import STEP_NUMERIC, StepSpec, compile_step_features, entity_tensor, step_tensors

__all__ = ["BF16_BATCH_QUANTUM", "PRECISIONS", "Architecture", "SequenceModel", "SequenceScorer", "bfloat16_supported"]

log = logging.getLogger("fraudstream.sequence")

#: Arithmetic the forward pass may use; the weights stay float32 either way.
PRECISIONS = ("float32", "bfloat16")

@dataclass(frozen=True)
class Architecture:
    """Transformer hyper-parameters (recorded in the checkpoint).

    One layer by default: only the scored step's output reaches the head, so
    the one layer needs a single query per window, into which the keys and
    values fold (:func:`models.attention.last_step_inference`); a second layer would need
    every step's output, keys and values included. Validation AP on generated data stayed within 0.01
    of two layers' (docs/benchmark-history.md, *One encoder layer*).
    Checkpoints record their own layer count.
    """

    d_model: int = 64
    n_layers: int = 1
    n_heads: int = 4
    dim_feedforward: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1 or self.d_model % self.n_heads:
            raise ValueError(f"need n_layers >= 1 and d_model divisible by n_heads, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SequenceModel(nn.Module):
    """Fraud logit of the last step of each window.

    Args:
        spec: window length and bucket counts.
        arch: transformer size.
        num_mean, num_std: standardisation of :data:`~models.steps.STEP_NUMERIC`
            (training statistics; default 0 and 1).
        logit_offset: added to the output; corrects for legit rows subsampled in training.
    """

    num_mean: torch.Tensor
    num_std: torch.Tensor
    logit_offset: torch.Tensor
    entity_mean: torch.Tensor
    entity_std: torch.Tensor

    def __init__(
        self,
        spec: StepSpec | None = None,
        arch: Architecture | None = None,
        num_mean: Sequence[float] | None = None,
        num_std: Sequence[float] | None = None,
        logit_offset: float = 0.0,
        entity_names: Sequence[str] = (),
        entity_mean: Sequence[float] | None = None,
        entity_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec or StepSpec()
        self.arch = arch or Architecture()
        d, f = self.arch.d_model, len(STEP_NUMERIC)
        #: The scored transaction's entity features the head reads (:data:`~models.profile_features.ENTITY_INPUTS`
        #: names; empty: none, as in checkpoints from before entity profiles). A card's history cannot show a
        #: breached terminal; the terminal's own profile can.
        self.entity_names = tuple(entity_names)
        e = len(self.entity_names)
        self.entity = nn.Linear(e, d) if e else None
        self.register_buffer("entity_mean", torch.tensor(entity_mean if entity_mean is not None else [0.0] * e,
                                                         dtype=torch.float32))
        self.register_buffer("entity_std", torch.tensor(entity_std if entity_std is not None else [1.0] * e,
                                                        dtype=torch.float32).clamp_min(1e-6))
        self.numeric = nn.Linear(f, d)
        self.embeddings = nn.ModuleList(nn.Embedding(k, d, padding_idx=0) for k in self.spec.buckets)
        self.recency = nn.Embedding(self.spec.n, d)
        layer = nn.TransformerEncoderLayer(
            d, self.arch.n_heads, self.arch.dim_feedforward, self.arch.dropout, batch_first=True, norm_first=True
        )
        # No nested tensors: the padded and unpadded paths must compute the same thing.
        self.encoder = nn.TransformerEncoder(layer, self.arch.n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        mean = torch.tensor(num_mean if num_mean is not None else [0.0] * f, dtype=torch.float32)
        std = torch.tensor(num_std if num_std is not None else [1.0] * f, dtype=torch.float32)
        # Buffers, so the weights file alone reproduces the scores.
        self.register_buffer("num_mean", mean)
        self.register_buffer("num_std", std.clamp_min(1e-6))
        self.register_buffer("logit_offset", torch.tensor(float(logit_offset)))

    def inputs(
        self, numeric: torch.Tensor, categorical: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Standardised numeric ``[B,N,F]`` and one embedding ``[B,N,d]`` per categorical field."""
        z = ((numeric - self.num_mean) / self.num_std).masked_fill(mask[..., None], 0.0)
        return z, [emb(categorical[..., c]) for c, emb in enumerate(self.embeddings)]

    def encode(self, z: torch.Tensor, embedded: list[torch.Tensor], mask: torch.Tensor,
               entity: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B]`` from :meth:`inputs` (split so explanations can take gradients)."""
        n = self._window(z)
        recency = torch.arange(n - 1, -1, -1, device=z.device)  # 0 = scored step
        h = self.numeric(z) + self.recency(recency)
        for e in embedded:  # summed in place of torch.stack(...).sum(0): no [C,B,N,d] copy
            h = h + e
        return self._steps_to_logits(h, mask, entity)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, mask: torch.Tensor,
                entity: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B]``; ``entity`` ``[B, len(entity_names)]``: the scored transactions' entity features."""
        if torch.is_grad_enabled():  # training, explanations: every input tensor exists for autograd
            return self.encode(*self.inputs(numeric, categorical, mask), mask, entity)
        return self._steps_to_logits(self._embed_for_inference(numeric, categorical), mask, entity)

    def _window(self, steps: torch.Tensor) -> int:
        n = steps.shape[1]
        if n > self.spec.n:
            raise ValueError(f"window of {n} steps exceeds the model's {self.spec.n}")
        return n

    def _embed_for_inference(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """The step embeddings of :meth:`encode`, computed in fewer passes over memory (no autograd).

        Standardisation is folded into the numeric layer's weights and its bias
        into the recency rows, which become a fifth table beside the four
        categorical ones: one ``embedding_bag`` sums a step's four category rows
        and its recency row, and one ``addmm`` adds the numeric layer's product
        in place. Two passes over the ``[B,N,d]`` steps where :meth:`encode`
        makes five tensors of that size (docs/benchmark-history.md, *Fewer
        passes over memory*). Equal to :meth:`encode`'s steps up to float
        rounding (padded steps differ, and are never attended to). Under bfloat16
        autocast the numeric product is bfloat16 and is added to the float32
        sums in a separate step, as :meth:`encode` adds it.
        """
        n = self._window(numeric)
        weight, table, offsets = self._inference_tables()
        b, _, c = categorical.shape
        # Row j of an N-step window takes recency row spec.n - N + j of the fifth table.
        steps = torch.arange(self.spec.n - n, self.spec.n) + int(offsets[-1])
        rows = torch.cat((categorical + offsets[:-1], steps.view(1, n, 1).expand(b, n, 1)), 2).view(-1, c + 1)
        h = F.embedding_bag(rows, table, mode="sum")  # [B*N, d]: categories, recency and the numeric bias
        if torch.is_autocast_enabled("cpu"):  # bfloat16 product, float32 sum, as in encode
            h += F.linear(numeric.reshape(b * n, -1), weight).float()
        else:
            h.addmm_(numeric.reshape(b * n, -1), weight.t())
        return h.view(b, n, -1)

    def _inference_tables(self) -> tuple[torch.Tensor, ...]:
        """Folded weights for :meth:`_embed_for_inference`, rebuilt when any parameter they come from changes."""
        embedding_tables = [cast(nn.Embedding, e).weight for e in self.embeddings]
        sources: list[torch.Tensor] = [self.numeric.weight, self.numeric.bias, self.num_mean, self.num_std,
                                       self.recency.weight, *embedding_tables]
        # Inference tensors (a model built under torch.inference_mode) keep no version counter.
        key = tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in sources)
        cached = self.__dict__.get("_tables")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                scale = 1.0 / self.num_std
                weight = self.numeric.weight * scale
                bias = self.numeric.bias - self.numeric.weight @ (self.num_mean * scale)
                # Row j: the recency of step j of a full window, plus the numeric layer's bias.
                table = torch.cat([*embedding_tables, self.recency.weight.flip(0) + bias])
                # Where each categorical table starts, and (last) where the recency rows do.
                offsets = torch.tensor(np.cumsum([0, *self.spec.buckets]).tolist(), dtype=torch.long)
            cached = (key, (weight, table, offsets))
            self.__dict__["_tables"] = cached  # not a buffer: derived, never saved in a checkpoint
        return cached[1]

    def _steps_to_logits(self, h: torch.Tensor, mask: torch.Tensor, entity: torch.Tensor | None = None
                         ) -> torch.Tensor:
        attend = ~mask[:, None, None, :]  # [B,1,1,N], True = key takes part (SDPA's convention)
        layers = self.encoder.layers
        for layer in layers[:-1]:
            h = encoder_layer(layer, h, attend)
        last = encoder_layer(layers[-1], h, attend, last_only=True)[:, 0]
        if self.entity is not None:  # the scored transaction's entity features join the card's sequence at the head
            if entity is None or entity.shape != (len(last), len(self.entity_names)):
                raise ValueError(f"this model reads {len(self.entity_names)} entity features per transaction, got "
                                 f"{None if entity is None else tuple(entity.shape)}")
            last = last + self.entity((entity.to(last.dtype) - self.entity_mean) / self.entity_std)
        # The head stays float32 under bfloat16 autocast: a bfloat16 logit near 5 is only
        # good to 0.03, ten times the encoder's own rounding. (No-ops in float32.)
        with torch.autocast("cpu", enabled=False):
            return self.head(_pad_to_power_of_two(last.float()))[:len(last), 0] + self.logit_offset


def _pad_to_power_of_two(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B,d]`` with zero rows added up to the next power of two (rows do not interact in the head).

    The head's GELU runs in oneDNN, which compiles and caches a kernel for every
    input shape it meets: a worker scoring micro-batches of every size from 1
    to 512 kept growing, in float32 too (a test in tests/models/test_sequence.py
    holds it flat). Padded, the head meets at most 10 shapes up to 512.
    """
    rows = x.shape[0]
    padded = 1 << max(rows - 1, 0).bit_length()
    return x if padded == rows else F.pad(x, (0, 0, 0, padded - rows))


#: bfloat16 batches are padded to a multiple of this many rows. oneDNN compiles a bfloat16
#: kernel per input shape and keeps it with its scratch memory, several MB a shape: unpadded,
#: a process that met every batch size from 1 to 512 grew several-fold (docs/benchmark-history.md,
#: *Memory is flat*). The padding repeats a real row and is cut off again.
BF16_BATCH_QUANTUM = 32


def _pad_rows(x: dict[str, torch.Tensor], quantum: int) -> dict[str, torch.Tensor]:
    """``x``'s tensors with their first row repeated up to a multiple of ``quantum`` rows (rows do not interact)."""
    b = x["mask"].shape[0]
    rows = -(-b // quantum) * quantum
    if rows == b:
        return x
    idx = torch.zeros(rows, dtype=torch.long)
    idx[:b] = torch.arange(b)
    return {k: v.index_select(0, idx) for k, v in x.items()}


def bfloat16_supported() -> bool:
    """True where the CPU does bfloat16 natively (x86: AVX512-BF16 or AMX); elsewhere it is emulated, slower than float32.

    (oneDNN's own check accepts any AVX-512 CPU, including those that only emulate it.)
    """
    if platform.machine().lower() in ("x86_64", "amd64"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class SequenceScorer:
    """:class:`~models.scoring.Scorer` around a trained :class:`SequenceModel`.

    Args:
        model: the network (put in eval mode).
        version: checkpoint id.
        threads: ``torch.set_num_threads`` value (process-wide); None leaves it.
        config: the checkpoint's config, kept for inspection.
        precision: one of :data:`PRECISIONS`. ``"bfloat16"`` runs the encoder
            under bfloat16 autocast (matrix products in bfloat16, normalisation
            and softmax in float32, the head in float32); on a CPU without
            native bfloat16 it falls back to float32 with a warning.
    """

    name = "sequence"

    def __init__(
        self, model: SequenceModel, version: str, threads: int | None = None, config: Mapping[str, Any] | None = None,
        precision: str = "float32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bfloat16" and not bfloat16_supported():
            log.warning("this CPU has no native bfloat16 (AVX512-BF16/AMX): the sequence model runs in float32")
            precision = "float32"
        self.model = model.eval()
        self.checkpoint_version = version
        self.precision = precision
        self.config = dict(config or {})
        if threads is not None:
            torch.set_num_threads(threads)
        compile_step_features()  # before the first micro-batch, which would otherwise wait for the compiler

    @property
    def version(self) -> str:
        """Recorded with every score: the checkpoint id, plus ``+bf16`` when the arithmetic was bfloat16."""
        return self.checkpoint_version + ("+bf16" if self.precision == "bfloat16" else "")

    @property
    def spec(self) -> StepSpec:
        return self.model.spec

    def logits(self, items: Sequence[ScoringItem]) -> np.ndarray:
        """Raw logits for a micro-batch (float64)."""
        if not items:
            return np.zeros(0)
        x = self._tensors(items)
        bf16 = self.precision == "bfloat16"
        if bf16:
            x = _pad_rows(x, BF16_BATCH_QUANTUM)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self.model(x["numeric"], x["categorical"], x["mask"], x.get("entity"))[:len(items)].double().numpy()

    def _tensors(self, items: Sequence[ScoringItem]) -> dict[str, torch.Tensor]:
        """The model's inputs: the cards' windows, and the entity features it was trained with, if any."""
        x = step_tensors(items, self.spec.n, self.spec)
        if self.model.entity_names:
            x["entity"] = entity_tensor(items, self.model.entity_names)
        return x

    def score_batch(self, items: Sequence[ScoringItem]) -> np.ndarray:
        """P(fraud) per item, one forward pass for the whole batch."""
        return 1.0 / (1.0 + np.exp(-self.logits(items)))

    def attributions(self, items: Sequence[ScoringItem]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradient x input: ``numeric [B,N,F]``, ``categorical [B,N,C]`` logit shares, and ``mask``."""
        x = self._tensors(items)
        with torch.enable_grad():
            z, embedded = self.model.inputs(x["numeric"], x["categorical"], x["mask"])
            z = z.detach().requires_grad_()
            embedded = [e.detach().requires_grad_() for e in embedded]
            logits = self.model.encode(z, embedded, x["mask"], x.get("entity"))
            # Items do not interact, so one backward of the sum gives every item's gradients.
            grads = torch.autograd.grad(logits.sum(), [z, *embedded])
        numeric = (grads[0] * z).detach().numpy()
        categorical = torch.stack([(g * e).sum(-1) for g, e in zip(grads[1:], embedded, strict=True)], -1)
        return numeric, categorical.detach().numpy(), x["mask"].numpy()

    def explain(self, items: Sequence[ScoringItem], steps: int = 2, features: int = 3) -> list[list[dict[str, Any]]]:
        """Per item, the past transactions and the features that pushed the score up most.

        Each reason is ``{"kind": "step"|"feature", "code", "text", "weight"}``;
        ``weight`` is the share of the logit (gradient x input), largest first.
        """
        if not items:
            return []
        numeric, categorical, mask = self.attributions(items)
        return reasons(items, numeric, categorical, mask, self.spec.n, steps, features)
