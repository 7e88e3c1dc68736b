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
about twice as fast here, logits within a few thousandths of float32's).
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

from models.scoring import ScoringItem
from models.steps import STEP_CATEGORICAL, STEP_NUMERIC, StepSpec, compile_step_features, step_tensors

__all__ = ["BF16_BATCH_QUANTUM", "PRECISIONS", "Architecture", "SequenceModel", "SequenceScorer", "bfloat16_supported"]

log = logging.getLogger("fraudstream.sequence")

#: Arithmetic the forward pass may use; the weights stay float32 either way.
PRECISIONS = ("float32", "bfloat16")

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Architecture:
    """Transformer hyper-parameters (recorded in the checkpoint).

    One layer by default: only the scored step's output reaches the head, so
    the one layer needs a single query per window, into which the keys and
    values fold (:func:`_last_step_inference`); a second layer would need
    every step's output, keys and values included. Validation AP on generated data stayed within 0.01
    of two layers' (lower in two of three runs; README, *The sequence model*).
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

    def __init__(
        self,
        spec: StepSpec | None = None,
        arch: Architecture | None = None,
        num_mean: Sequence[float] | None = None,
        num_std: Sequence[float] | None = None,
        logit_offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.spec = spec or StepSpec()
        self.arch = arch or Architecture()
        d, f = self.arch.d_model, len(STEP_NUMERIC)
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

    def encode(self, z: torch.Tensor, embedded: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` from :meth:`inputs` (split so explanations can take gradients)."""
        n = self._window(z)
        recency = torch.arange(n - 1, -1, -1, device=z.device)  # 0 = scored step
        h = self.numeric(z) + self.recency(recency)
        for e in embedded:  # summed in place of torch.stack(...).sum(0): no [C,B,N,d] copy
            h = h + e
        return self._steps_to_logits(h, mask)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training, explanations: every input tensor exists for autograd
            return self.encode(*self.inputs(numeric, categorical, mask), mask)
        return self._steps_to_logits(self._embed_for_inference(numeric, categorical), mask)

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
        makes five tensors of that size (at 512 windows: 1.9 µs a window
        against 3.1 for the linear layer, the recency rows and the bag added in
        turn; the whole forward pass 7.0 against 8.0). Equal to :meth:`encode`'s
        steps up to float rounding
        (padded steps differ, and are never attended to). Under bfloat16
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

    def _steps_to_logits(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attend = ~mask[:, None, None, :]  # [B,1,1,N], True = key takes part (SDPA's convention)
        layers = self.encoder.layers
        for layer in layers[:-1]:
            h = _encoder_layer(layer, h, attend)
        last = _encoder_layer(layers[-1], h, attend, last_only=True)[:, 0]
        # The head stays float32 under bfloat16 autocast: a bfloat16 logit near 5 is only
        # good to 0.03, ten times the encoder's own rounding. (No-ops in float32.)
        with torch.autocast("cpu", enabled=False):
            return self.head(_pad_to_power_of_two(last.float()))[:len(last), 0] + self.logit_offset


def _pad_to_power_of_two(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B,d]`` with zero rows added up to the next power of two (rows do not interact in the head).

    The head's GELU runs in oneDNN, which compiles and caches a kernel for every
    input shape it meets (~0.3 MB each, up to 1,024 of them): a worker scoring
    micro-batches of every size from 1 to 512 grew its RSS by ~150 MB over 2,000
    batches, in float32 too. Padded, the head meets at most 10 shapes up to 512.
    """
    rows = x.shape[0]
    padded = 1 << max(rows - 1, 0).bit_length()
    return x if padded == rows else F.pad(x, (0, 0, 0, padded - rows))


def _encoder_layer(
    layer: nn.TransformerEncoderLayer, h: torch.Tensor, attend: torch.Tensor, last_only: bool = False
) -> torch.Tensor:
    """A pre-norm ``layer`` applied to ``h`` ``[B,N,d]``: ``[B,N,d]``, or ``[B,1,d]`` with ``last_only``.

    The same arithmetic as ``layer(h, src_key_padding_mask=~attend)`` (dropout
    included in training; a test holds them equal), written out because
    PyTorch's inference fast path for the layer spends most of its time in a
    masked softmax: with :func:`~torch.nn.functional.scaled_dot_product_attention`
    the sequence model's forward pass costs about a third less on CPU.

    ``last_only``: only the scored step's output reaches the head, so the last
    layer needs one query per window, not N. In training every position still
    serves as key and value; in inference (:func:`_last_step_inference`) the
    keys and values fold into that one query.
    """
    if last_only and not (layer.training or torch.is_grad_enabled()):
        return _last_step_inference(layer, h, attend)
    mha = layer.self_attn
    b, _, d = h.shape
    heads = mha.num_heads
    y = layer.norm1(h)
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    if last_only:
        h = h[:, -1:]
        q = F.linear(y[:, -1:], w[:d], None if bias is None else bias[:d])
        k, v = F.linear(y, w[d:], None if bias is None else bias[d:]).split(d, -1)
    else:
        q, k, v = F.linear(y, w, bias).split(d, -1)
    q, k, v = (t.view(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attend,
                                              dropout_p=mha.dropout if mha.training else 0.0)
    out = mha.out_proj(attended.transpose(1, 2).reshape(b, -1, d))
    if layer.training or torch.is_grad_enabled() or out.dtype != h.dtype:
        x = h + layer.dropout1(out)
        return x + layer._ff_block(layer.norm2(x))
    # Inference in one dtype (under bfloat16 autocast `out` is bfloat16 and `h` float32, so
    # that takes the branch above): the same sums, bit for bit, in place, so the residuals
    # and the ReLU make no new [B,N,d] / [B,N,ff] tensors.
    x = out.add_(h)
    ff = layer.linear1(layer.norm2(x))
    ff = ff.relu_() if layer.activation_relu_or_gelu == 1 else layer.activation(ff)
    return layer.linear2(ff).add_(x)


def _last_step_inference(layer: nn.TransformerEncoderLayer, h: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
    """:func:`_encoder_layer`'s ``last_only`` output ``[B,1,d]`` in inference, without keys and values.

    With a single query per window the key and value projections can move
    to the query's side. Per head, with ``y_j`` the normalised steps:

    - ``q . (Wk y_j + bk) = (Wk^T q) . y_j + q . bk``, and ``q . bk`` is the
      same for every step, so softmax drops it: the scores are ``(Wk^T q) . y_j``;
    - ``sum_j a_j (Wv y_j + bv) = Wv (sum_j a_j y_j) + bv``, the weights summing to 1.

    Projecting the 32 steps of a window to keys and values took most of the
    layer's arithmetic (2 x 32 x 64 x 64 multiply-adds per window); this takes
    about a tenth of it. The one-layer model's whole forward pass went from
    ~19 to ~9 µs per transaction (batches of 463 windows, a quiet machine).
    Equal to the key-and-value form up to float rounding (tests hold both
    within 1e-5 of PyTorch's own encoder). Training and explanations keep that
    form. A window must have at least one step to attend to (the scored step
    always is); one with none would come out NaN.
    """
    mha = layer.self_attn
    b, _, d = h.shape
    heads = mha.num_heads
    head_dim = d // heads
    y = layer.norm1(h)  # [B,N,d]
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    q = F.linear(y[:, -1], w[:d], None if bias is None else bias[:d]).view(b, heads, head_dim)
    # The query in the steps' own space, scaled as scaled_dot_product_attention scales it.
    query = torch.einsum("bhe,hed->bhd", q, w[d:2 * d].view(heads, head_dim, d)) * head_dim ** -0.5
    # Scores and softmax in float32 under bfloat16 autocast too, as scaled_dot_product_attention
    # keeps them (a few multiply-adds per step; in bfloat16 the logits moved ~25 % further).
    with torch.autocast("cpu", enabled=False):
        scores = torch.bmm(query.float(), y.float().transpose(1, 2)).masked_fill(~attend[:, 0], float("-inf"))
        weights = torch.softmax(scores, -1)  # [B,H,N]
    mixed = torch.bmm(weights, y)  # [B,H,d]: each head's weighted sum of steps
    attended = torch.einsum("bhd,hed->bhe", mixed, w[2 * d:].view(heads, head_dim, d))
    if bias is not None:
        attended = attended + bias[2 * d:].view(heads, head_dim)
    x = mha.out_proj(attended.reshape(b, d)) + h[:, -1]  # float32 under bfloat16 autocast too, as `h` is
    ff = layer.linear1(layer.norm2(x))
    ff = ff.relu_() if layer.activation_relu_or_gelu == 1 else layer.activation(ff)
    # Not linear2(ff).add_(x): in place, a bfloat16 product would keep the residual sum in bfloat16.
    return (x + layer.linear2(ff))[:, None]


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _feature_text(name: str, item: ScoringItem) -> str:
    t = item.transaction
    hour = (t.event_time_ms // 3_600_000) % 24
    texts = {
        "log_amount": f"amounts in the card's recent sequence (this one {t.amount:.2f} {t.currency})",
        "amount_vs_mean": f"amount {t.amount:.2f} {t.currency} against the card's usual amounts",
        "amount_vs_max": f"amount {t.amount:.2f} {t.currency} against the card's largest recent amount",
        "log_gap_prev": "timing between the card's recent transactions",
        "log_gap_to_scored": "how recently the card's earlier transactions happened",
        "hour_sin": f"time of day ({hour:02d}:00 UTC)",
        "hour_cos": f"time of day ({hour:02d}:00 UTC)",
        "weekday_sin": f"day of week ({_WEEKDAYS[(t.event_time_ms // 86_400_000 + 3) % 7]})",
        "weekday_cos": f"day of week ({_WEEKDAYS[(t.event_time_ms // 86_400_000 + 3) % 7]})",
        "is_new_merchant": "merchants new to the card in its recent sequence",
        "is_new_country": "countries new to the card in its recent sequence",
        "is_new_channel": "channels new to the card in its recent sequence",
        "country_share": f"how often the card was used in {t.country} recently",
        "channel_share": f"how often the card was used for {t.channel} recently",
        "log_n_1h": "number of transactions on the card in the hour before",
        "log_n_24h": "number of transactions on the card in the 24 h before",
        "merchant": f"merchant {t.merchant_id or '(unknown)'} and the card's recent merchants",
        "mcc": f"merchant category MCC {t.mcc} and the card's recent categories",
        "country": f"country {t.country} and the card's recent countries",
        "channel": f"channel {t.channel} and the card's recent channels",
    }
    return "sequence: " + texts[name]


#: bfloat16 batches are padded to a multiple of this many rows. oneDNN compiles a bfloat16
#: kernel per input shape and keeps it with its scratch memory (about 3.6 MB a shape here):
#: unpadded, one process that met every batch size from 1 to 512 grew from 235 MB to 2.1 GB;
#: padded, to 352 MB. The padding repeats a real row and is cut off again.
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
        x = step_tensors(items, self.spec.n, self.spec)
        bf16 = self.precision == "bfloat16"
        if bf16:
            x = _pad_rows(x, BF16_BATCH_QUANTUM)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self.model(x["numeric"], x["categorical"], x["mask"])[:len(items)].double().numpy()

    def score_batch(self, items: Sequence[ScoringItem]) -> np.ndarray:
        """P(fraud) per item, one forward pass for the whole batch."""
        return 1.0 / (1.0 + np.exp(-self.logits(items)))

    def attributions(self, items: Sequence[ScoringItem]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradient x input: ``numeric [B,N,F]``, ``categorical [B,N,C]`` logit shares, and ``mask``."""
        x = step_tensors(items, self.spec.n, self.spec)
        with torch.enable_grad():
            z, embedded = self.model.inputs(x["numeric"], x["categorical"], x["mask"])
            z = z.detach().requires_grad_()
            embedded = [e.detach().requires_grad_() for e in embedded]
            logits = self.model.encode(z, embedded, x["mask"])
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
        n = self.spec.n
        out: list[list[dict[str, Any]]] = []
        for b, item in enumerate(items):
            reasons: list[dict[str, Any]] = []
            per_step = numeric[b].sum(-1) + categorical[b].sum(-1)
            window = item.history[-(n - 1):] if n > 1 else item.history[:0]
            first = n - 1 - len(window)
            now = item.transaction.event_time_ms
            past = sorted(((float(per_step[j]), j) for j in range(first, n - 1) if not mask[b, j]), reverse=True)
            for w, j in past[:steps]:
                if w <= 0:
                    break
                e = window[j - first]
                text = (f"sequence: transaction {_ago(max(now - e.ts, 0) / 1000)} before, "
                        f"amount {e.amount:.2f}, {e.channel} in {e.country} (MCC {e.mcc})")
                reasons.append({"kind": "step", "code": f"sequence_step_{n - 1 - j}", "text": text, "weight": round(w, 4)})
            per_feature = dict(zip(STEP_NUMERIC, numeric[b].sum(0).tolist(), strict=True))
            per_feature.update(zip(STEP_CATEGORICAL, categorical[b].sum(0).tolist(), strict=True))
            seen: set[str] = set()
            ranked = sorted(((w, k) for k, w in per_feature.items() if w > 0), reverse=True)
            for w, k in ranked:
                text = _feature_text(k, item)
                if len(seen) >= features or text in seen:  # sin and cos say the same thing
                    continue
                seen.add(text)
                reasons.append({"kind": "feature", "code": f"sequence_{k}", "text": text, "weight": round(w, 4)})
            out.append(reasons)
        return out
