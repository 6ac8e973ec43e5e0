"""The grading interface: small functions with fixed signatures that connect a test suite to our code.

Each function only translates arguments and calls the real implementation in a root module.
Names and meanings follow Stanford CS336's 2025 assignment 1 where one exists.
Each section below belongs to one module; edit only your module's section.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import torch


# ---------------------------------------------------------------- bpe.py (issue 2)
def run_train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str],
                  **kwargs):
    """-> (vocab {id: bytes}, merges [(bytes, bytes)] in creation order); kwargs go to
    bpe.train_bpe."""
    import bpe
    from pathlib import Path

    tok = bpe.train_bpe(Path(input_path), vocab_size, special_tokens, **kwargs)
    return tok.vocab, [(tok.vocab[a], tok.vocab[b]) for a, b in tok.merges]


def get_tokenizer(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                  special_tokens: list[str] | None = None):
    """-> an object with encode / decode / encode_iterable; the given special tokens are always
    recognised."""
    import bpe
    from functools import partial
    from types import SimpleNamespace

    by_bytes = {v: i for i, v in vocab.items()}
    specials, next_id = {}, max(vocab) + 1
    for s in special_tokens or []:
        if s.encode("utf-8") in by_bytes:
            specials[s] = by_bytes[s.encode("utf-8")]
        else:
            specials[s], next_id = next_id, next_id + 1
    tok = bpe.Tokenizer(merges, vocab, specials)
    return SimpleNamespace(encode=partial(tok.encode, allowed_special="all"), decode=tok.decode,
                           encode_iterable=partial(tok.encode_iterable, allowed_special="all"),
                           tokenizer=tok)
# ---------------------------------------------------------------- end bpe.py


# ---------------------------------------------------------------- bpe.py real tokenizers (issue 14)
def get_hf_tokenizer(path: str | os.PathLike):
    """-> an object with encode(text) -> list[int] (special tokens in the text become their ids)
    and decode(ids) -> str, for a directory holding a tokenizer.json, a tokenizer.json, or a
    .gguf file."""
    import bpe
    from functools import partial
    from types import SimpleNamespace

    tok = bpe.load_tokenizer(path)
    return SimpleNamespace(encode=partial(tok.encode, allowed_special="all"), decode=tok.decode,
                           tokenizer=tok)
# ---------------------------------------------------------------- end bpe.py real tokenizers


# ---------------------------------------------------------------- wordpiece.py (issue 3)
def run_train_wordpiece(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> list[str]:
    import files
    import wordpiece

    text = files.read_text(input_path, "input_path")
    return wordpiece.train_wordpiece(text, vocab_size, special_tokens=special_tokens)


def get_wordpiece_tokenizer(vocab: list[str], lowercase: bool = True):
    import wordpiece

    return wordpiece.WordPieceTokenizer(vocab, lowercase=lowercase)
# ---------------------------------------------------------------- end wordpiece.py


# ---------------------------------------------------------------- model.py (issue 4)
def run_gpt2_logits(model_dir, in_indices):
    """Logits (B, T, V) of the Hugging Face GPT-2 directory model_dir on in_indices (B, T)."""
    import model
    with torch.no_grad():
        return model.GPT.from_pretrained(str(model_dir)).eval()(in_indices)[0]


def run_gpt2_generate(model_dir, in_indices, max_new_tokens, use_cache=True):
    """Greedy continuation (B, T + max_new_tokens) of in_indices (B, T) by the GPT-2 in model_dir."""
    import model
    gpt = model.GPT.from_pretrained(str(model_dir)).eval()
    return gpt.generate(in_indices, max_new_tokens, temperature=0, use_cache=use_cache)


def run_softmax(in_features, dim):
    # the model's softmax is torch's (inside scaled_dot_product_attention, cross_entropy and sampling): stable,
    # it subtracts the max before exponentiating
    return torch.softmax(in_features, dim=dim)


def run_silu(in_features):
    return torch.nn.functional.silu(in_features)  # what model.MLP's SwiGLU gate uses


def run_linear(d_in, d_out, weights, in_features):
    """weights (d_out, d_in): y = x W^T, the layout of every projection in model.GPT (nn.Linear)."""
    layer = torch.nn.Linear(d_in, d_out, bias=False)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_embedding(vocab_size, d_model, weights, token_ids):
    layer = torch.nn.Embedding(vocab_size, d_model)  # model.GPT's transformer.wte
    layer.load_state_dict({"weight": weights})
    return layer(token_ids)


def run_scaled_dot_product_attention(Q, K, V, mask=None):
    """Q (..., q, d), K (..., k, d), V (..., k, dv), mask (q, k) bool True = may attend -> (..., q, dv)."""
    return torch.nn.functional.scaled_dot_product_attention(Q, K, V, attn_mask=mask)  # model's attention kernel


def run_rmsnorm(d_model, eps, weights, in_features):
    import model
    norm = model.RMSNorm(d_model, eps=eps)
    norm.load_state_dict({"weight": weights})
    return norm(in_features)


def _llama_config(d_model, num_heads, d_ff=None, max_seq_len=2048, theta=10000.0, rope=True, **kwargs):
    """A GPTConfig with the Llama-style options on: RMSNorm, no biases, SwiGLU, RoPE (if rope), untied head."""
    import model
    return model.GPTConfig(n_embd=d_model, n_head=num_heads, n_inner=d_ff, block_size=max_seq_len, rope=rope,
                           rope_theta=theta, rmsnorm=True, bias=False, swiglu=True, tie_embeddings=False, **kwargs)


def run_swiglu(d_model, d_ff, w1_weight, w2_weight, w3_weight, in_features):
    """SwiGLU: w2(silu(w1 x) * w3 x); w1 (gate) and w3 (up) are fused in model.MLP's c_fc, gate first."""
    import model
    mlp = model.MLP(_llama_config(d_model, 1, d_ff))
    mlp.load_state_dict({"c_fc.weight": torch.cat([w1_weight, w3_weight]), "c_proj.weight": w2_weight})
    return mlp(in_features)


def run_rope(d_k, theta, max_seq_len, in_query_or_key, token_positions):
    """Rotate in_query_or_key (..., T, d_k) by token_positions (..., T) (pairs (2i, 2i+1), as in CS336)."""
    import model
    return model.apply_rope(in_query_or_key, *model.rope_cos_sin(token_positions, d_k, theta))


def _attention(config, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features, token_positions):
    import model
    attn = model.CausalSelfAttention(config)
    attn.load_state_dict({"c_attn.weight": torch.cat([q_proj_weight, k_proj_weight, v_proj_weight]),
                          "c_proj.weight": o_proj_weight})
    *lead, T, C = in_features.shape
    x = in_features.reshape(-1, T, C)  # (B, T, C) with any leading dims folded into B
    rope = None
    if config.rope:
        positions = torch.arange(T) if token_positions is None else token_positions
        cos, sin = model.rope_cos_sin(positions.reshape(-1, T) if positions.dim() > 1 else positions,
                                      C // config.n_head, config.rope_theta)
        rope = (cos[:, None], sin[:, None]) if cos.dim() == 3 else (cos, sin)  # broadcast over heads
    return attn(x, rope).reshape(*lead, T, C)


def run_multihead_self_attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight,
                                 in_features):
    """Causal multi-head self-attention without bias; projection weights (d_model, d_model) each."""
    config = _llama_config(d_model, num_heads, rope=False)
    return _attention(config, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features, None)


def run_multihead_self_attention_with_rope(d_model, num_heads, max_seq_len, theta, q_proj_weight, k_proj_weight,
                                           v_proj_weight, o_proj_weight, in_features, token_positions=None):
    config = _llama_config(d_model, num_heads, max_seq_len=max_seq_len, theta=theta)
    return _attention(config, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features,
                      token_positions)


def _block_state_dict(weights, prefix=""):
    """CS336 block weight names -> model.Block names (q, k, v fused into c_attn; w1, w3 into c_fc)."""
    w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    return {"ln_1.weight": w["ln1.weight"], "ln_2.weight": w["ln2.weight"],
            "attn.c_attn.weight": torch.cat([w["attn.q_proj.weight"], w["attn.k_proj.weight"],
                                             w["attn.v_proj.weight"]]),
            "attn.c_proj.weight": w["attn.output_proj.weight"],
            "mlp.c_fc.weight": torch.cat([w["ffn.w1.weight"], w["ffn.w3.weight"]]),
            "mlp.c_proj.weight": w["ffn.w2.weight"]}


def run_transformer_block(d_model, num_heads, d_ff, max_seq_len, theta, weights, in_features):
    """One pre-norm RMSNorm + RoPE + SwiGLU block on in_features (B, T, d_model), positions 0..T-1."""
    import model
    config = _llama_config(d_model, num_heads, d_ff, max_seq_len, theta)
    block = model.Block(config)
    block.load_state_dict(_block_state_dict(weights))
    T = in_features.shape[-2]
    cos, sin = model.rope_cos_sin(torch.arange(T, device=in_features.device), d_model // num_heads, theta)
    return block(in_features, (cos, sin))


def run_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta, weights,
                       in_indices):
    """Logits (B, T, vocab_size) of a CS336 Transformer LM, run as model.GPT with the Llama-style options."""
    import model
    config = _llama_config(d_model, num_heads, d_ff, context_length, rope_theta, vocab_size=vocab_size,
                           n_layer=num_layers)
    gpt = model.GPT(config)
    sd = {"transformer.wte.weight": weights["token_embeddings.weight"],
          "transformer.ln_f.weight": weights["ln_final.weight"], "lm_head.weight": weights["lm_head.weight"]}
    for i in range(num_layers):
        sd.update({f"transformer.h.{i}.{k}": v for k, v in _block_state_dict(weights, f"layers.{i}.").items()})
    gpt.load_state_dict(sd)
    return gpt(in_indices)[0]
# ---------------------------------------------------------------- end model.py


# ---------------------------------------------------------------- model.py: pretrained models (issue 9)
def load_hf_model(path):
    """Our GPT (eval mode) from a Hugging Face directory (GPT-2, Llama, Mistral, Qwen2), a .gguf
    file, or a name (gpt2, smollm2, a hub id)."""
    import model
    return model.GPT.from_pretrained(str(path)).eval()


def run_hf_logits(model, in_indices):
    """Logits (B, T, V) of a loaded model on in_indices (B, T)."""
    with torch.no_grad():
        return model(in_indices)[0]


def run_hf_generate(model, in_indices, max_new_tokens):
    """Greedy continuation (B, T + max_new_tokens) of in_indices (B, T), with the KV cache."""
    return model.generate(in_indices, max_new_tokens, temperature=0, use_cache=True)


def run_export_hf(model, out_dir):
    """Write out_dir/config.json + model.safetensors, which transformers' AutoModelForCausalLM
    loads with our logits."""
    import model as model_lib
    model_lib.export_hf(model, str(out_dir))
# ---------------------------------------------------------------- end model.py: pretrained models


# ---------------------------------------------------------------- train.py (issue 5)
def run_get_batch(dataset, batch_size: int, context_length: int, device: str):
    """(x, y) LongTensors (batch_size, context_length) of random windows of dataset (1-D ids), y shifted by one."""
    import train
    return train.get_batch(dataset, batch_size, context_length, device)


def run_cross_entropy(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits inputs (..., V) against targets (...)."""
    import train
    return train.cross_entropy(inputs, targets)


def run_gradient_clipping(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float) -> None:
    """Scale the gradients in place to a global L2 norm of at most max_l2_norm."""
    import train
    train.clip_grad_norm(list(parameters), max_l2_norm)


def get_adamw_cls():
    """Our hand-written AdamW (torch.optim.Optimizer subclass, torch.optim.AdamW's arguments)."""
    import train
    return train.AdamW


def run_get_lr_cosine_schedule(it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int,
                               cosine_cycle_iters: int) -> float:
    import train
    return train.get_lr(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


def run_save_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, iteration: int, out) -> None:
    """Save model, optimizer and iteration to out (a path, atomically, or a binary file object)."""
    import checkpoints
    checkpoints.save_checkpoint(out, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "iter_num": iteration})


def run_load_checkpoint(src, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimizer from src (a path or binary file object); return the saved iteration."""
    import checkpoints
    ckpt = checkpoints.load_checkpoint(src)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt["iter_num"]
# ---------------------------------------------------------------- end train.py


# ---------------------------------------------------------------- sft.py (issue 6)
def get_sft_batch(examples: list[tuple[list[int], list[int]]], eot_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows prompt + answer + [eot]: inputs [B, T] padded with pad_id to the batch's longest row, targets [B, T]
    the next tokens with prompt positions and padding set to -100."""
    import sft
    return sft.sft_batch(examples, eot_id, pad_id)
# ---------------------------------------------------------------- end sft.py


# ---------------------------------------------------------------- hellaswag.py (issue 8)
def run_hellaswag_scores(model_dir: str | os.PathLike, example: dict) -> tuple[list[float], list[float]]:
    """Summed and mean cross-entropy of each of the example's 4 endings under a Hugging Face GPT-2 directory."""
    import hellaswag
    from model import GPT
    from bpe import tokenizer_from_spec

    model = GPT.from_pretrained(str(model_dir))
    return hellaswag.score_example(model, tokenizer_from_spec({"kind": "gpt2"}).encode, example, "cpu")
# ---------------------------------------------------------------- end hellaswag.py
