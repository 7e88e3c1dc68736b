"""The sequence model and its scorer: shapes, padding, probabilities, explanations."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.features import engineered_batch
from models.fusion import Fusion
from models.history import History, append, new_history, prior_history
from models.online import OnlineLearner
from models.scoring import Scorer, ScoringItem
from models.sequence import Architecture, SequenceModel, SequenceScorer, bfloat16_supported
from models.steps import STEP_CATEGORICAL, STEP_NUMERIC, StepSpec, step_tensors
from stream.contracts.records import Transaction

BASE = 1_740_830_400_000


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def card_items(lengths: tuple[int, ...] = (0, 1, 3, 15)) -> list[ScoringItem]:
    """One item per card; card k has ``lengths[k]`` earlier transactions."""
    items = []
    for card, length in enumerate(lengths):
        history: History = new_history()
        for i in range(length + 1):
            t = Transaction(f"t{card}-{i}", f"c{card}", BASE + i * 600_000, 10.0 + 7 * i, "EUR", f"m{i % 4}",
                            "5411", "FR" if i % 5 else "DE", "pos" if i % 3 else "ecom")
            prior = prior_history(history, t)
            history = append(history, t, limit=32)
        items.append(ScoringItem(t, prior, engineered_batch([prior], [t])[0]))
    return items


def model(n: int = 12, seed: int = 0) -> SequenceModel:
    torch.manual_seed(seed)
    return SequenceModel(StepSpec(n=n), Architecture(d_model=32, n_layers=2, n_heads=4, dim_feedforward=64)).eval()


def test_forward_shapes() -> None:
    m = SequenceModel()  # defaults: d_model 64, 1 layer, 4 heads, 32 steps
    assert m.arch == Architecture(64, 1, 4, 128, 0.1) and m.spec.n == 32
    x = step_tensors(card_items(), n=32)
    assert x["numeric"].shape == (4, 32, len(STEP_NUMERIC)) and x["categorical"].shape == (4, 32, len(STEP_CATEGORICAL))
    with torch.inference_mode():
        logits = m.eval()(x["numeric"], x["categorical"], x["mask"])
    assert logits.shape == (4,) and torch.isfinite(logits).all()


def test_extra_padding_does_not_change_the_output() -> None:
    m = model(n=12)
    items = card_items((0, 1, 3, 6))
    with torch.inference_mode():
        short = m(**step_tensors(items, n=8))
        long = m(**step_tensors(items, n=12))
    torch.testing.assert_close(short, long, rtol=1e-5, atol=1e-5)


def test_padded_values_are_ignored() -> None:
    m = model(n=8)
    x = step_tensors(card_items((2,)), n=8)
    noisy = {k: v.clone() for k, v in x.items()}
    noisy["numeric"][x["mask"]] = 123.0
    noisy["categorical"][x["mask"]] = 5
    with torch.inference_mode():
        torch.testing.assert_close(m(**x), m(**noisy))


def test_window_longer_than_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        model(n=4)(**step_tensors(card_items((1,)), n=6))


def test_scorer_returns_probabilities_for_a_batch() -> None:
    scorer = SequenceScorer(model(n=12), version="seq-test", threads=1)
    assert isinstance(scorer, Scorer) and scorer.name == "sequence" and scorer.version == "seq-test"
    assert torch.get_num_threads() == 1
    items = card_items() * 20
    p = scorer.score_batch(items)
    assert p.shape == (80,) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p[:4], scorer.score_batch(items[:4]), rtol=1e-5)  # batch composition does not matter
    assert scorer.score_batch([]).shape == (0,)


@pytest.mark.skipif(not bfloat16_supported(), reason="this CPU has no native bfloat16")
def test_bfloat16_logits_stay_within_rounding_of_float32() -> None:
    # Logits near -5, as a fraud model's usually are: a bfloat16 head would be off by up to 0.016 there.
    torch.manual_seed(0)
    m = SequenceModel(StepSpec(n=12), Architecture(d_model=32, n_layers=2, n_heads=4, dim_feedforward=64),
                      logit_offset=-5.0)
    items = card_items((0, 1, 3, 11)) * 8
    exact = SequenceScorer(m, version="seq-test").logits(items)
    fast = SequenceScorer(m, version="seq-test", precision="bfloat16")
    got = fast.logits(items)
    assert fast.version == "seq-test+bf16" and fast.checkpoint_version == "seq-test"
    assert not np.array_equal(got, exact), "the bfloat16 path did not run"
    assert np.abs(got - exact).max() < 4e-3


@pytest.mark.skipif(not bfloat16_supported(), reason="this CPU has no native bfloat16")
def test_bfloat16_batches_come_in_few_shapes() -> None:
    """oneDNN keeps a compiled kernel per bfloat16 input shape: batch sizes are padded to a few."""
    m = model(n=12)
    seen: list[int] = []
    m.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    fast, exact = SequenceScorer(m, version="seq-test", precision="bfloat16"), SequenceScorer(m, version="seq-test")
    items = card_items((0, 1, 3, 11)) * 10
    for size in (1, 5, 32, 33, 40):
        got = fast.logits(items[:size])
        assert got.shape == (size,) and np.abs(got - exact.logits(items[:size])).max() < 4e-3
    assert seen[::2] == [32, 32, 32, 64, 64] and seen[1::2] == [1, 5, 32, 33, 40]  # bfloat16, float32 calls


def test_bfloat16_falls_back_to_float32_without_native_support(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("models.sequence.bfloat16_supported", lambda: False)
    scorer = SequenceScorer(model(n=12), version="seq-test", precision="bfloat16")
    assert scorer.precision == "float32" and scorer.version == "seq-test"
    assert "no native bfloat16" in caplog.text
    with pytest.raises(ValueError, match="precision"):
        SequenceScorer(model(n=12), version="seq-test", precision="float16")


def test_scorer_plugs_into_fusion() -> None:
    scorer = SequenceScorer(model(n=12), version="seq-test")
    fusion = Fusion(OnlineLearner(), sequence=scorer)
    fused = fusion.score_batch(card_items())
    assert fusion.versions() == {"online": "online-0", "sequence": "seq-test"}
    np.testing.assert_allclose(fused.score, fused.components["sequence"])


def test_explain_names_past_transactions_and_features() -> None:
    scorer = SequenceScorer(model(n=12), version="seq-test")
    items = card_items((0, 6))
    before = [p.detach().clone() for p in scorer.model.parameters()]
    reasons = scorer.explain(items, steps=3, features=4)
    assert len(reasons) == 2
    assert all(r["kind"] == "feature" for r in reasons[0])  # no past transactions to blame
    for r in reasons[1]:
        assert set(r) == {"kind", "code", "text", "weight"} and r["weight"] > 0
        assert r["text"].startswith("sequence: ")
    steps = [r for r in reasons[1] if r["kind"] == "step"]
    assert len(steps) <= 3 and all("before, amount" in r["text"] for r in steps)
    assert len([r for r in reasons[1] if r["kind"] == "feature"]) <= 4
    # Gradients must not leak into the model.
    assert all(p.grad is None for p in scorer.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, scorer.model.parameters(), strict=True))
    numeric, categorical, mask = scorer.attributions(items)
    assert numeric.shape == (2, 12, len(STEP_NUMERIC)) and categorical.shape == (2, 12, len(STEP_CATEGORICAL))
    assert np.all(numeric[mask] == 0) and np.all(categorical[mask] == 0)
    assert scorer.explain([]) == []


def test_every_feature_has_an_explanation() -> None:
    from models.sequence_reasons import feature_text

    item = card_items((1,))[0]
    texts = {name: feature_text(name, item) for name in (*STEP_NUMERIC, *STEP_CATEGORICAL)}
    assert all(text.startswith("sequence: ") for text in texts.values())


def _random_window(model: SequenceModel, b: int = 9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = model.spec.n
    numeric = torch.randn(b, n, model.numeric.in_features)
    categorical = torch.stack([torch.randint(0, k, (b, n)) for k in model.spec.buckets], -1)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[:4, : n // 2] = True  # short histories: left padding
    return numeric, categorical, mask


def _torch_encoder_logits(model: SequenceModel, numeric: torch.Tensor, categorical: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
    """The logits through PyTorch's own ``nn.TransformerEncoder``, every position of every layer."""
    z, embedded = model.inputs(numeric, categorical, mask)
    recency = torch.arange(model.spec.n - 1, -1, -1)
    x = model.numeric(z) + torch.stack(embedded).sum(0) + model.recency(recency)
    return model.head(model.encoder(x, src_key_padding_mask=mask)[:, -1]).squeeze(-1) + model.logit_offset


def test_written_out_layers_equal_pytorchs_encoder_in_inference():
    torch.manual_seed(0)
    model = SequenceModel(StepSpec(), Architecture()).eval()
    window = _random_window(model)
    with torch.inference_mode():
        ours = model(*window)
        reference = _torch_encoder_logits(model, *window)
    assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_last_step_without_keys_and_values_equals_pytorchs_encoder(
        layers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Inference moves the last layer's key and value projections onto the query (no keys or
    # values per step); with grad enabled the key-and-value form runs: compare all three.
    from models import attention
    folded = []
    fold = attention.last_step_inference
    monkeypatch.setattr(attention, "last_step_inference", lambda *a: folded.append(1) or fold(*a))
    torch.manual_seed(layers)
    model = SequenceModel(StepSpec(n=16), Architecture(d_model=32, n_layers=layers, dim_feedforward=64)).eval()
    with torch.no_grad():  # PyTorch starts the projection biases at 0; trained ones are not
        for layer in model.encoder.layers:
            layer.self_attn.in_proj_bias.normal_(std=0.5)
    window = _random_window(model, b=33)
    with torch.inference_mode():
        fast = model(*window)
        reference = _torch_encoder_logits(model, *window)
    assert folded == [1], "inference did not take the folded path"
    written_out = model.encode(*model.inputs(*window), window[2]).detach()
    assert folded == [1], "with grad enabled the key-and-value form must run"
    assert torch.allclose(fast, reference, atol=1e-5), (fast - reference).abs().max()
    assert torch.allclose(fast, written_out, atol=1e-5), (fast - written_out).abs().max()


def _standardised_model(seed: int) -> SequenceModel:
    """A small model with non-trivial standardisation (what the inference path folds into its weights)."""
    torch.manual_seed(seed)
    f = len(STEP_NUMERIC)
    return SequenceModel(StepSpec(n=12), Architecture(d_model=32, dim_feedforward=64),
                         num_mean=torch.randn(f).tolist(), num_std=(torch.rand(f) + 0.5).tolist()).eval()


def test_inference_embedding_equals_the_autograd_path_and_follows_new_weights():
    # Non-trivial standardisation (folded into the weights) and a window shorter than the model's.
    model = _standardised_model(1)
    f = len(STEP_NUMERIC)
    numeric, categorical, mask = _random_window(model)
    window = (numeric[:, 4:], categorical[:, 4:], mask[:, 4:])

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            fast = model(*window)
        with torch.no_grad():
            reference = model.encode(*model.inputs(*window), window[2])
        return fast, reference

    fast, reference = both()
    assert torch.allclose(fast, reference, atol=1e-5), (fast - reference).abs().max()
    # New weights (a checkpoint loaded into the same module): the folded tables are rebuilt.
    torch.manual_seed(2)
    other = SequenceModel(StepSpec(n=12), Architecture(d_model=32, dim_feedforward=64), num_std=[2.0] * f)
    model.load_state_dict(other.state_dict())
    fast_after, reference_after = both()
    assert not torch.allclose(fast_after, fast, atol=1e-3)
    assert torch.allclose(fast_after, reference_after, atol=1e-5), (fast_after - reference_after).abs().max()


def test_inference_embedding_under_bfloat16_autocast_adds_a_bfloat16_product_to_float32_sums():
    """The bfloat16 path's steps (run emulated where the CPU lacks bfloat16): float32, within bfloat16's rounding."""
    model = _standardised_model(3)
    numeric, categorical, _ = _random_window(model)
    with torch.inference_mode():
        exact = model._embed_for_inference(numeric[:, 3:], categorical[:, 3:])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = model._embed_for_inference(numeric[:, 3:], categorical[:, 3:])
        product = F.linear(numeric[:, 3:], model._inference_tables()[0])
    assert rounded.dtype == torch.float32 and rounded.shape == exact.shape == (9, 9, 32)
    assert not torch.equal(rounded, exact), "the bfloat16 product did not run"
    assert (rounded - exact).abs().max() <= 2 ** -7 * product.abs().max()


def test_written_out_layers_equal_pytorchs_encoder_in_training():
    # Dropout 0 so both are deterministic: same values and same gradients for every parameter.
    torch.manual_seed(0)
    model = SequenceModel(StepSpec(n=8), Architecture(d_model=32, dim_feedforward=64, dropout=0.0)).train()
    window = _random_window(model)
    ours = model(*window)
    ours_grads = torch.autograd.grad(ours.sum(), list(model.parameters()), allow_unused=True)
    reference = _torch_encoder_logits(model, *window)
    reference_grads = torch.autograd.grad(reference.sum(), list(model.parameters()), allow_unused=True)
    assert torch.allclose(ours, reference, atol=1e-5)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


# Scores every batch size from 1 to 512, as a worker's micro-batches come.
_SHAPES = """
import sys
import torch
import models.sequence as sequence
from models.sequence import Architecture, SequenceModel
from models.steps import StepSpec
if sys.argv[1] == "unpadded":
    sequence._pad_to_power_of_two = lambda x: x
torch.manual_seed(0)
model = SequenceModel(StepSpec(n=4), Architecture(d_model=64, n_layers=1, dim_feedforward=64)).eval()
with torch.inference_mode():
    for b in range(1, 513):
        model(torch.randn(b, 4, model.numeric.in_features), torch.ones(b, 4, 4, dtype=torch.long),
              torch.zeros(b, 4, dtype=torch.bool))
"""


def test_batch_sizes_do_not_each_leave_a_compiled_kernel_behind() -> None:
    """oneDNN compiles and caches a kernel per input shape (~0.3 MB each): RSS grew with every new batch size."""
    def compiled(mode: str) -> int:
        env = {**os.environ, "ONEDNN_VERBOSE": "profile_create"}  # one line per kernel compiled (cache miss)
        out = subprocess.run([sys.executable, "-c", _SHAPES, mode], capture_output=True, text=True, check=True,
                             env=env)
        return out.stdout.count("create:cache_miss")

    unpadded = compiled("unpadded")
    if unpadded < 50:
        pytest.skip(f"this CPU's PyTorch compiles no per-shape kernels for the head ({unpadded} over 512 sizes)")
    padded = compiled("padded")
    assert unpadded >= 400 and padded <= 12, (unpadded, padded)  # one per size, against powers of two up to 512
