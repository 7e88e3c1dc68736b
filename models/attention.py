"""The sequence model's transformer encoder layer, written out for fast CPU inference.

:func:`encoder_layer` is the arithmetic of PyTorch's pre-norm
``nn.TransformerEncoderLayer`` with a key padding mask, written out so that
inference skips PyTorch's fast path (which spends most of its time in a
masked softmax) and so that the last layer computes only the scored step:
only that step's output reaches the model's head. :func:`last_step_inference`
goes one step further for that last layer in inference and folds the key and
value projections into the single query. Tests hold both equal to PyTorch's
own encoder (tests/models/test_sequence.py); training and explanations keep
the key-and-value form, which autograd needs.

Example:
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True, norm_first=True).eval()
    >>> h = torch.randn(3, 5, 8)
    >>> attend = torch.ones(3, 1, 1, 5, dtype=torch.bool)  # every step takes part
    >>> with torch.inference_mode():
    ...     full = encoder_layer(layer, h, attend)
    ...     last = encoder_layer(layer, h, attend, last_only=True)
    >>> full.shape, last.shape, bool(torch.allclose(full[:, -1:], last, atol=1e-5))
    (torch.Size([3, 5, 8]), torch.Size([3, 1, 8]), True)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["encoder_layer", "last_step_inference"]


def encoder_layer(
    layer: nn.TransformerEncoderLayer, h: torch.Tensor, attend: torch.Tensor, last_only: bool = False
) -> torch.Tensor:
    """A pre-norm ``layer`` applied to ``h`` ``[B,N,d]``: ``[B,N,d]``, or ``[B,1,d]`` with ``last_only``.

    The same arithmetic as ``layer(h, src_key_padding_mask=~attend)`` (dropout
    included in training; a test holds them equal), written out because
    PyTorch's inference fast path for the layer spends most of its time in a
    masked softmax; :func:`~torch.nn.functional.scaled_dot_product_attention`
    avoids it.

    ``last_only``: only the scored step's output reaches the head, so the last
    layer needs one query per window, not N. In training every position still
    serves as key and value; in inference (:func:`last_step_inference`) the
    keys and values fold into that one query.
    """
    if last_only and not (layer.training or torch.is_grad_enabled()):
        return last_step_inference(layer, h, attend)
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


def last_step_inference(layer: nn.TransformerEncoderLayer, h: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
    """:func:`encoder_layer`'s ``last_only`` output ``[B,1,d]`` in inference, without keys and values.

    With a single query per window the key and value projections can move
    to the query's side. Per head, with ``y_j`` the normalised steps:

    - ``q . (Wk y_j + bk) = (Wk^T q) . y_j + q . bk``, and ``q . bk`` is the
      same for every step, so softmax drops it: the scores are ``(Wk^T q) . y_j``;
    - ``sum_j a_j (Wv y_j + bv) = Wv (sum_j a_j y_j) + bv``, the weights summing to 1.

    Projecting the 32 steps of a window to keys and values took most of the
    layer's arithmetic (2 x 32 x 64 x 64 multiply-adds per window); this takes
    about a tenth of it, which roughly halves the one-layer model's forward
    pass (docs/benchmark-history.md). Equal to the key-and-value form up to float rounding (tests hold both
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
