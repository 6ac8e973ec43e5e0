"""The grading interface of the Spring 2024 edition of Stanford CS336 assignment 1, on our code.

The 2024 model is GPT-2-like where the 2025 one is Llama-like: learned absolute positions, pre-norm
RMSNorm, a Linear-GELU(erf)-Linear feed-forward (w1, w2, no biases), an untied output head, and two
dropout rates: attn_pdrop on the attention probabilities, residual_pdrop on the embeddings and on
each sublayer's output. Each function loads the given weights into model.py's GPT or one of its
parts, built with GPTConfig's flags, by mapping the handout's names onto ours; none re-implements
the model. The functions that mean the same in both editions are tests/adapters.py's, re-exported.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

import model
from tests import adapters
from tests.adapters import (get_adamw_cls, get_tokenizer, run_cross_entropy, run_get_batch,
                            run_get_lr_cosine_schedule, run_gradient_clipping, run_load_checkpoint,
                            run_save_checkpoint, run_softmax, run_train_bpe)

__all__ = ["run_positionwise_feedforward", "run_scaled_dot_product_attention",
           "run_multihead_self_attention", "run_transformer_block", "run_transformer_lm",
           "run_rmsnorm", "run_gelu", "run_softmax", "run_cross_entropy", "run_get_batch",
           "run_gradient_clipping", "get_adamw_cls", "run_get_lr_cosine_schedule",
           "run_save_checkpoint", "run_load_checkpoint", "get_tokenizer", "run_train_bpe"]

# 2024 block weight name -> model.Block name, for the weights that map one to one (q, k and v are
# fused into attn.c_attn by _block_state_dict)
BLOCK_NAMES = {"ln1.weight": "ln_1.weight", "ln2.weight": "ln_2.weight",
               "attn.output_proj.weight": "attn.c_proj.weight",
               "ffn.w1.weight": "mlp.c_fc.weight", "ffn.w2.weight": "mlp.c_proj.weight"}


def _config(d_model: int, num_heads: int, d_ff: int | None = None, dropout: float = 0.0,
            **kwargs) -> model.GPTConfig:
    """The GPTConfig of the 2024 model: RMSNorm (eps 1e-5), exact GELU, no biases, learned
    positions, untied head; dropout is residual_pdrop (set the attention's own with _attn_pdrop)."""
    return model.GPTConfig(n_embd=d_model, n_head=num_heads, n_inner=d_ff, dropout=dropout,
                           norm_eps=1e-5, rmsnorm=True, exact_gelu=True, bias=False, rope=False,
                           tie_embeddings=False, **kwargs)


def _attn_pdrop(attn: model.CausalSelfAttention, attn_pdrop: float) -> None:
    """Sets the rate of the attention's dropout on its probabilities to attn_pdrop.

    model.py has one rate, config.dropout, for the attention probabilities and for the residual
    outputs; 2024 has two. CausalSelfAttention reads its probabilities' rate from its config at
    each forward, so it gets a copy of the config with that rate; its output dropout keeps the
    residual rate it was built with.
    """
    attn.config = dataclasses.replace(attn.config, dropout=attn_pdrop)


def _on_sequences(module: torch.nn.Module, in_features: torch.Tensor) -> torch.Tensor:
    """module(in_features) for in_features (..., T, C), any leading dims folded into one batch dim,
    since model.py's attention takes exactly (B, T, C)."""
    *lead, T, C = in_features.shape
    return module(in_features.reshape(-1, T, C)).reshape(*lead, T, C)


def run_positionwise_feedforward(d_model: int, d_ff: int, weights: dict[str, torch.Tensor],
                                 in_features: torch.Tensor) -> torch.Tensor:
    """w2(GELU(w1 x)) with exact GELU and no biases, as model.MLP: w1.weight (d_ff, d_model) is
    its c_fc, w2.weight (d_model, d_ff) its c_proj."""
    mlp = model.MLP(_config(d_model, 1, d_ff))
    mlp.load_state_dict({"c_fc.weight": weights["w1.weight"],
                         "c_proj.weight": weights["w2.weight"]})
    return mlp(in_features)


def run_scaled_dot_product_attention(K: torch.Tensor, Q: torch.Tensor, V: torch.Tensor,
                                     mask: torch.Tensor | None = None,
                                     pdrop: float | None = None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k)) V, (..., q, d_v), with model.py's attention kernel.

    In the 2024 edition a mask entry True means masked out (the 2025 one and torch: True = may
    attend), so the kernel gets ~mask; pdrop (None: none) drops attention probabilities.
    """
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=None if mask is None else ~mask,
                                          dropout_p=pdrop or 0.0)


def run_multihead_self_attention(d_model: int, num_heads: int, attn_pdrop: float = 0.0,
                                 weights: dict[str, torch.Tensor] | None = None,
                                 in_features: torch.Tensor | None = None) -> torch.Tensor:
    """Causal multi-head self-attention of in_features (..., T, d_model), as model's
    CausalSelfAttention, from per-head weights q_heads.{h}.weight, k_heads.{h}.weight,
    v_heads.{h}.weight (d_k, d_model) and output_proj.weight (d_model, d_model).

    c_attn's rows are q, k, v, each with the heads one after another, so the per-head rows stack
    in that order. attn_pdrop defaults to 0, as the 2024 test calls this without it (keywords).
    """
    if weights is None or in_features is None:
        raise TypeError("run_multihead_self_attention needs weights and in_features")
    attn = model.CausalSelfAttention(_config(d_model, num_heads))  # no output dropout in 2024
    _attn_pdrop(attn, attn_pdrop)
    qkv = [weights[f"{s}_heads.{h}.weight"] for s in "qkv" for h in range(num_heads)]
    attn.load_state_dict({"c_attn.weight": torch.cat(qkv),
                          "c_proj.weight": weights["output_proj.weight"]})
    return _on_sequences(attn, in_features)


def _block_state_dict(weights: dict[str, torch.Tensor],
                      prefix: str = "") -> dict[str, torch.Tensor]:
    """The 2024 block weights under prefix (attn.q_proj.weight, ln1.weight, ffn.w1.weight, ...)
    renamed to model.Block's, q, k and v fused into attn.c_attn."""
    sd = {ours: weights[prefix + theirs] for theirs, ours in BLOCK_NAMES.items()}
    sd["attn.c_attn.weight"] = torch.cat([weights[f"{prefix}attn.{s}_proj.weight"] for s in "qkv"])
    return sd


def run_transformer_block(d_model: int, num_heads: int, d_ff: int, attn_pdrop: float,
                          residual_pdrop: float, weights: dict[str, torch.Tensor],
                          in_features: torch.Tensor) -> torch.Tensor:
    """One pre-norm block, x + attn(RMSNorm(x)) then x + ffn(RMSNorm(x)), as model.Block, on
    in_features (..., T, d_model); residual_pdrop drops each sublayer's output."""
    block = model.Block(_config(d_model, num_heads, d_ff, dropout=residual_pdrop))
    _attn_pdrop(block.attn, attn_pdrop)
    block.load_state_dict(_block_state_dict(weights))
    return _on_sequences(block, in_features)


def run_transformer_lm(vocab_size: int, context_length: int, d_model: int, num_layers: int,
                       num_heads: int, d_ff: int, attn_pdrop: float, residual_pdrop: float,
                       weights: dict[str, torch.Tensor], in_indices: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, vocab_size) of the 2024 Transformer LM on in_indices (B, T), run as model.GPT:
    token_embeddings and position_embeddings are its wte and wpe, layers.{i} its blocks, ln_final
    its ln_f; residual_pdrop also drops the sum of the embeddings, as in the handout."""
    config = _config(d_model, num_heads, d_ff, dropout=residual_pdrop, vocab_size=vocab_size,
                     block_size=context_length, n_layer=num_layers)
    gpt = model.GPT(config)
    for block in gpt.transformer.h:
        _attn_pdrop(block.attn, attn_pdrop)
    sd = {"transformer.wte.weight": weights["token_embeddings.weight"],
          "transformer.wpe.weight": weights["position_embeddings.weight"],
          "transformer.ln_f.weight": weights["ln_final.weight"],
          "lm_head.weight": weights["lm_head.weight"]}
    for i in range(num_layers):
        layer = _block_state_dict(weights, f"layers.{i}.")
        sd.update({f"transformer.h.{i}.{name}": w for name, w in layer.items()})
    gpt.load_state_dict(sd)
    return gpt(in_indices)[0]


def run_rmsnorm(d_model: int, eps: float, weights: dict[str, torch.Tensor],
                in_features: torch.Tensor) -> torch.Tensor:
    """model.RMSNorm of in_features (..., d_model); 2024 passes the gain as {"weight": (d_model,)},
    2025 as the tensor itself."""
    return adapters.run_rmsnorm(d_model, eps, weights["weight"], in_features)


def run_gelu(in_features: torch.Tensor) -> torch.Tensor:
    """x * Phi(x) with the exact (erf) normal CDF: the GELU of model.MLP with exact_gelu=True."""
    return F.gelu(in_features, approximate="none")
