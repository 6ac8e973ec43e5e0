"""tests/adapters_2024.py (CS336 Spring 2024 interface) against direct torch computations of the
2024 handout's equations, written here on random weights made here: RMSNorm, GELU(erf), the
w1/w2 feed-forward, softmax(QK^T / sqrt(d_k)) V with the 2024 mask (True = masked out), a
per-head loop for multi-head attention, the pre-norm block and the learned-position LM."""
import math

import pytest
import torch

from tests import adapters, adapters_2024

D_MODEL, HEADS, D_FF, T = 16, 4, 40, 7
ATOL = 1e-5


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=ATOL)


def _weights(shapes: dict, seed: int = 0) -> dict:
    """Random float32 tensors of these shapes: gains (1-D) around 1, matrices scaled by fan-in."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        w = torch.randn(shape, generator=g)
        out[name] = 1 + 0.2 * w if len(shape) == 1 else w / math.sqrt(shape[-1])
    return out


# ------------------------------------------------------------------------- the handout's equations
def rmsnorm(x, gain, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def gelu(x):
    return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def ffn(x, w1, w2):
    return gelu(x @ w1.T) @ w2.T


def attention(Q, K, V, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V; mask True = masked out (the 2024 convention)."""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ V


def multihead(x, wq, wk, wv, wo):
    """Causal self-attention, one head at a time; wq, wk, wv: lists of (d_k, d_model), per head."""
    future = torch.ones(x.shape[-2], x.shape[-2], dtype=torch.bool).triu(1)
    heads = [attention(x @ q.T, x @ k.T, x @ v.T, future) for q, k, v in zip(wq, wk, wv)]
    return torch.cat(heads, dim=-1) @ wo.T


def block(x, w, num_heads, prefix=""):
    """Pre-norm: y = x + MHA(RMSNorm(x)); y + FFN(RMSNorm(y)). q/k/v_proj rows: head after head."""
    heads = [w[f"{prefix}attn.{s}_proj.weight"].chunk(num_heads) for s in "qkv"]
    y = x + multihead(rmsnorm(x, w[prefix + "ln1.weight"]), *heads,
                      w[prefix + "attn.output_proj.weight"])
    return y + ffn(rmsnorm(y, w[prefix + "ln2.weight"]), w[prefix + "ffn.w1.weight"],
                   w[prefix + "ffn.w2.weight"])


def _block_shapes(prefix=""):
    return {**{f"{prefix}attn.{s}_proj.weight": (D_MODEL, D_MODEL) for s in "qkv"},
            f"{prefix}attn.output_proj.weight": (D_MODEL, D_MODEL),
            f"{prefix}ln1.weight": (D_MODEL,), f"{prefix}ln2.weight": (D_MODEL,),
            f"{prefix}ffn.w1.weight": (D_FF, D_MODEL), f"{prefix}ffn.w2.weight": (D_MODEL, D_FF)}


def _head_weights(num_heads=HEADS, seed=0):
    """2024 MHA weights: q/k/v_heads.{h}.weight (d_k, d_model) per head, output_proj.weight."""
    d_k = D_MODEL // num_heads
    shapes = {f"{s}_heads.{h}.weight": (d_k, D_MODEL) for s in "qkv" for h in range(num_heads)}
    return _weights({**shapes, "output_proj.weight": (D_MODEL, D_MODEL)}, seed)


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- the adapters
def test_rmsnorm_and_gelu():
    x, w = _x(3, T, D_MODEL), _weights({"weight": (D_MODEL,)})
    _close(adapters_2024.run_rmsnorm(D_MODEL, 1e-5, w, x), rmsnorm(x, w["weight"]))
    _close(adapters_2024.run_gelu(x), gelu(x))


def test_positionwise_feedforward():
    x, w = _x(3, T, D_MODEL), _weights({"w1.weight": (D_FF, D_MODEL), "w2.weight": (D_MODEL, D_FF)})
    _close(adapters_2024.run_positionwise_feedforward(D_MODEL, D_FF, w, x),
           ffn(x, w["w1.weight"], w["w2.weight"]))


@pytest.mark.parametrize("lead", [(), (3,), (2, HEADS)], ids=["2d", "3d", "4d"])
def test_scaled_dot_product_attention_masks_out_true(lead):
    Q, K, V = _x(*lead, T, 8, seed=1), _x(*lead, T, 8, seed=2), _x(*lead, T, 5, seed=3)
    mask = torch.rand(T, T, generator=torch.Generator().manual_seed(4)) < 0.5
    mask.fill_diagonal_(False)  # every query keeps at least one key
    _close(adapters_2024.run_scaled_dot_product_attention(K=K, Q=Q, V=V, mask=mask, pdrop=0.0),
           attention(Q, K, V, mask))
    _close(adapters_2024.run_scaled_dot_product_attention(K, Q, V), attention(Q, K, V))
    # the same with torch's own kernel, which takes True = may attend
    peer = torch.nn.functional.scaled_dot_product_attention(Q, K, V, attn_mask=~mask)
    _close(adapters_2024.run_scaled_dot_product_attention(K, Q, V, mask, None), peer)


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)], ids=["unbatched", "batched", "2 batch dims"])
def test_multihead_self_attention_per_head_weights(lead):
    w, x = _head_weights(), _x(*lead, T, D_MODEL)
    per_head = [[w[f"{s}_heads.{h}.weight"] for h in range(HEADS)] for s in "qkv"]
    expected = multihead(x, *per_head, w["output_proj.weight"])
    # called with keywords and without attn_pdrop, as the 2024 test calls it
    _close(adapters_2024.run_multihead_self_attention(d_model=D_MODEL, num_heads=HEADS, weights=w,
                                                      in_features=x), expected)
    _close(adapters_2024.run_multihead_self_attention(D_MODEL, HEADS, 0.0, w, x), expected)


def test_transformer_block():
    w, x = _weights(_block_shapes()), _x(3, T, D_MODEL)
    actual = adapters_2024.run_transformer_block(D_MODEL, HEADS, D_FF, attn_pdrop=0.0,
                                                 residual_pdrop=0.0, weights=w, in_features=x)
    _close(actual, block(x, w, HEADS))


def test_transformer_lm_learned_positions_untied_head():
    vocab, context, layers = 50, 10, 2
    shapes = {"token_embeddings.weight": (vocab, D_MODEL),
              "position_embeddings.weight": (context, D_MODEL),
              "ln_final.weight": (D_MODEL,), "lm_head.weight": (vocab, D_MODEL)}
    for i in range(layers):
        shapes.update(_block_shapes(f"layers.{i}."))
    w = _weights(shapes)
    for n in (context, 6):  # a full context, and a shorter input (positions 0..5 of the table)
        idx = torch.randint(vocab, (3, n), generator=torch.Generator().manual_seed(n))
        x = w["token_embeddings.weight"][idx] + w["position_embeddings.weight"][:n]
        for i in range(layers):
            x = block(x, w, HEADS, f"layers.{i}.")
        expected = rmsnorm(x, w["ln_final.weight"]) @ w["lm_head.weight"].T
        actual = adapters_2024.run_transformer_lm(vocab, context, D_MODEL, layers, HEADS, D_FF,
                                                  0.0, 0.0, w, idx)
        _close(actual, expected)


def test_pdrop_drops_attention_probabilities():
    # Where a query has a single key its attention probability is 1, so with the probabilities
    # dropped (survivors scaled by 1 / (1 - p)) the output there is either all 0 or the undropped
    # output / (1 - p); a dropout on the output instead would zero single entries. Rows: 400 draws.
    p = 0.5
    torch.manual_seed(0)
    Q, K, V = _x(400, 1, 8, seed=1), _x(400, 1, 8, seed=2), _x(400, 1, 5, seed=3)
    _check_dropped(adapters_2024.run_scaled_dot_product_attention(K, Q, V, pdrop=p), V, p)
    # multi-head attention with one head, at position 0 (which sees only itself)
    w, x = _head_weights(num_heads=1), _x(1, T, D_MODEL).expand(400, T, D_MODEL)
    undropped = multihead(x, [w["q_heads.0.weight"]], [w["k_heads.0.weight"]],
                          [w["v_heads.0.weight"]], w["output_proj.weight"])
    out = adapters_2024.run_multihead_self_attention(D_MODEL, 1, p, w, x)
    _check_dropped(out[:, 0], undropped[:, 0], p)


def _check_dropped(out, undropped, p):
    kept = out.abs().sum(-1) > 0
    assert 100 < int(kept.sum()) < 300  # about 1 - p of the 400 rows
    _close(out[kept], undropped[kept] / (1 - p))


def test_the_rest_is_the_2025_interface():
    for name in ("run_softmax", "run_cross_entropy", "run_get_batch", "run_gradient_clipping",
                 "get_adamw_cls", "run_get_lr_cosine_schedule", "run_save_checkpoint",
                 "run_load_checkpoint", "get_tokenizer", "run_train_bpe"):
        assert getattr(adapters_2024, name) is getattr(adapters, name), name
    assert set(adapters_2024.__all__) <= set(dir(adapters_2024))
