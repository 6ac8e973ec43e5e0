"""GPT-2 by hand, in one file, with Hugging Face GPT-2's parameter names.

- `GPTConfig` + `GPT`: the GPT-2 transformer (pre-norm blocks, tied embeddings, tanh GELU, learned positions).
- Architecture flags turn it, a few lines at a time, into a Llama-style model: RMSNorm, no biases, exact GELU,
  rotary position embeddings (RoPE), SwiGLU feed-forward, untied output head.
- `GPT.from_pretrained` loads a Hugging Face GPT-2 directory (or a model from the local HF cache);
  `save_pretrained` writes one that `transformers.GPT2LMHeadModel.from_pretrained` reads back.
- `generate` samples with a preallocated key/value cache that slides once the context fills the block.

Shapes: B batch, T time (sequence), C n_embd, H n_head, D head size (C // H), V vocab_size, F n_inner.

    python model.py gpt2 --prompt_ids 464,3290      # greedy continuation of token ids with local HF weights
"""
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bpe import gpt2_tokenizer, tokenizer_from_spec
from checkpoints import load_checkpoint
from files import atomic_write


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
    swiglu: bool = False  # SwiGLU feed-forward instead of Linear-GELU-Linear
    tie_embeddings: bool = True  # lm_head shares its weight with the token embedding

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name}={getattr(self, name)} must be >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.rope and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got n_embd/n_head={self.n_embd // self.n_head}")
        if self.swiglu and self.exact_gelu:
            raise ValueError("swiglu uses SiLU, not GELU: set exact_gelu=False")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    @property
    def ffn_size(self):
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring or bias (cheaper, works as well)."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # (..., C) -> (..., C)
        xf = x.float()  # the mean of squares in float32, also under bf16 autocast
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def norm_layer(config):
    if config.rmsnorm:
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_cos_sin(positions, head_size, theta):
    """cos and sin of the rotation angles, (..., T) positions -> two (..., T, D/2) float32 tensors.

    Pair i of a head vector turns by angle position * theta^(-2i/D): fast for the first pairs, slow for the last,
    so that the dot product of a rotated query and key depends only on their distance."""
    inv_freq = theta ** (-torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32) / head_size)
    angles = positions.float()[..., None] * inv_freq  # (..., T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate the adjacent pairs (x[2i], x[2i+1]) of x (..., T, D) by the angles in cos/sin (..., T, D/2)."""
    xf = x.float()  # one float32 copy under autocast (none for float32 x)
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, D/2, 2)
    return out.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of the positions seen so far, one preallocated (B, H, block_size, D) pair per layer.

    Writing in place into a buffer allocated once avoids a torch.cat (a copy of the whole cache) per token."""

    def __init__(self, n_layer, block_size):
        self.block_size = block_size
        self.k = [None] * n_layer
        self.v = [None] * n_layer
        self.pos = 0  # number of positions filled (the same in every layer)

    def update(self, layer, k, v):
        """Store k, v (B, H, T, D) at positions pos..pos+T; return all keys and values so far (B, H, pos+T, D)."""
        B, H, T, D = k.shape
        if self.k[layer] is None:  # allocated on the first write, with the dtype autocast gives k and v
            self.k[layer] = k.new_empty(B, H, self.block_size, D)
            self.v[layer] = v.new_empty(B, H, self.block_size, D)
        self.k[layer][:, :, self.pos:self.pos + T] = k
        self.v[layer][:, :, self.pos:self.pos + T] = v
        return self.k[layer][:, :, :self.pos + T], self.v[layer][:, :, :self.pos + T]


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.n_head, self.layer_idx, self.config = config.n_head, layer_idx, config
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, attn_mask=None, kv_cache=None):
        B, T, C = x.shape
        # (B, T, 3C) -> (B, T, 3, H, D) -> 3 x (B, H, T, D): q, k, v for every head, as views (no copies)
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4).unbind(0)
        if rope is not None:  # rotate queries and keys by their positions (values are not rotated)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = kv_cache.pos if kv_cache is not None else 0
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, H, past + T, D)
        if attn_mask is not None:  # (B, T, T) True = may attend, e.g. block-diagonal for packed sequences
            mask, is_causal = attn_mask[:, None], False
        elif past > 0 and T > 1:  # new queries after cached keys: query i sees keys up to past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            is_causal = False
        else:  # plain causal; a single new query (T == 1) may see every cached key, so no mask at all
            mask, is_causal = None, T > 1
        # fused attention: flash / memory-efficient kernels on CUDA when no mask is given
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.config.dropout if self.training else 0.0)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        # SwiGLU needs two input projections (gate and up); they are fused into one matmul, gate first
        n_out = 2 * config.ffn_size if config.swiglu else config.ffn_size
        self.c_fc = nn.Linear(config.n_embd, n_out, bias=config.bias)
        self.c_proj = nn.Linear(config.ffn_size, config.n_embd, bias=config.bias)
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


# bf16 dense tensor-core peak FLOP/s, first substring of torch.cuda.get_device_name() that matches wins
# (so a name that contains another, e.g. L40S / L40 / L4, comes before it)
PEAK_FLOPS = [
    ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("H200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12), ("V100", 125e12), ("T4", 65e12),
    ("RTX 4090", 165e12), ("RTX 3090", 71e12),
]

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
HF_NAMES = {"gpt2": "openai-community/gpt2", "gpt2-medium": "openai-community/gpt2-medium",
            "gpt2-large": "openai-community/gpt2-large", "gpt2-xl": "openai-community/gpt2-xl"}


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=norm_layer(config),
        ))
        if not config.rope:
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:  # the input embedding doubles as the output projection (saves V*C params)
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer),
            if name.endswith("c_proj.weight"):  # as each of the 2 * n_layer adds to the residual stream
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_num_params(self, non_embedding=True):
        """Parameter count (the tied lm_head once). non_embedding drops the position embedding (and the token
        embedding if untied), as they are lookups, not matmuls: the count that FLOPs scale with."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if not self.config.rope:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def forward(self, idx, targets=None, attn_mask=None, positions=None, kv_cache=None):
        """idx (B, T) token ids -> (logits (B, T, V), mean cross-entropy over targets != -100, or None).

        attn_mask: optional bool (B, T, T), True = may attend (default causal).
        positions: optional long (B, T) position ids (default 0..T-1, or after the cache's filled positions).
        kv_cache: optional KVCache; the new keys/values are appended to it."""
        B, T = idx.shape
        past = kv_cache.pos if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens is longer than block_size={self.config.block_size}: "
                             "crop it (generate slides its window itself)")
        if attn_mask is not None and past > 0:
            raise ValueError("attn_mask covers only the new tokens: it cannot be combined with a filled kv_cache")
        if idx.device.type == "cpu" and not torch.compiler.is_compiling():  # free here; on a GPU a sync,
            self.check_inputs(idx, positions)  # so there the callers check once, at their boundary
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.rope:
            if positions is None:
                positions = torch.arange(past, past + T, dtype=torch.long, device=idx.device)  # (T)
            rope = rope_cos_sin(positions, self.config.n_embd // self.config.n_head, self.config.rope_theta)
            rope = tuple(t[:, None] if t.dim() == 3 else t for t in rope)  # (B, 1, T, D/2): broadcast over heads
        elif positions is None:  # consecutive positions: a slice of the table, cheaper than a lookup
            x = x + self.transformer.wpe.weight[past:past + T]  # + (T, C)
        else:
            x = x + self.transformer.wpe(positions)  # + (B, T, C)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, rope, attn_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += T
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def check_inputs(self, idx, positions=None):
        """ValueError unless every token id is in the vocab and every learned position in the table: a clear
        error instead of an index error (CPU) or a device-side assert (CUDA). It reads the values: a sync."""
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
        """AdamW with weight decay on matmul weights and embeddings (2+ dims) only, not on biases and norm gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        # the fused kernel does the whole update in one pass over the parameters; torch has it for these devices
        fused = device_type in ("cuda", "cpu", "mps", "xpu")
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops=None):
        """Model FLOPs utilization: achieved FLOP/s (PaLM appendix B count) / the device's peak FLOP/s.

        peak_flops: override; by default looked up for the CUDA device in PEAK_FLOPS (bf16 dense).
        Returns None when the peak is unknown (CPU, a GPU not in the table) and no override is given."""
        if peak_flops is None:
            device = next(self.parameters()).device
            if device.type == "cuda":
                name = torch.cuda.get_device_name(device)
                peak_flops = next((flops for key, flops in PEAK_FLOPS if key in name), None)
            if peak_flops is None:
                return None
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        flops_per_token = 6 * self.get_num_params() + 12 * L * H * Q * T  # 6N for the matmuls, + attention
        return flops_per_token * T * fwdbwd_per_iter / dt / peak_flops

    # ------------------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate_stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None,
                        use_cache=True):
        """Yield the next tokens (B, 1) one step at a time; see generate."""
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"idx must be a (B, T) tensor with T >= 1, got shape {tuple(idx.shape)}")
        if max_new_tokens < 0 or temperature < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} and temperature={temperature} must be >= 0")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1 (or None)")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1] (or None)")
        self.check_inputs(idx)
        B, T = idx.shape
        block = self.config.block_size
        keep = max(1, block // 2)  # when the cache is full, restart it from the last half window
        tokens = idx.new_empty(B, T + max_new_tokens)  # the prompt and every token generated, (B, n) filled
        tokens[:, :T] = idx
        cache, finished = None, torch.zeros(B, dtype=torch.bool, device=idx.device)
        for n in range(T, T + max_new_tokens):
            if not use_cache:  # recompute everything over the last block_size tokens
                logits, _ = self(tokens[:, max(0, n - block):n])
            elif cache is None or cache.pos == block:
                # (re)fill the cache from the recent context, positions from 0. Learned positions cannot be shifted
                # in place, so the window slides by recomputing half of it once every block_size/2 tokens.
                cache = KVCache(self.config.n_layer, block)
                logits, _ = self(tokens[:, max(0, n - (block if n == T else keep)):n], kv_cache=cache)
            else:
                logits, _ = self(tokens[:, n - 1:n], kv_cache=cache)  # only the newest token: (B, 1, V)
            idx_next = sample_next(logits[:, -1, :], temperature, top_k, top_p)  # (B, 1)
            if eos_id is not None:  # finished rows keep emitting eos; stop when every row is done
                idx_next = torch.where(finished[:, None], eos_id, idx_next)
                finished |= idx_next[:, 0] == eos_id
            tokens[:, n] = idx_next[:, 0]
            yield idx_next
            if eos_id is not None and finished.all():
                return

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None, use_cache=True):
        """Continue idx (B, T) by up to max_new_tokens tokens -> (B, T + new). temperature 0 is greedy;
        top_k / top_p restrict sampling to the k likeliest tokens / the smallest set with probability >= top_p;
        generation stops early once every row has produced eos_id. Call model.eval() first."""
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, eos_id, use_cache))
        return torch.cat([idx, *new], dim=1)

    # ------------------------------------------------------------------------------ Hugging Face checkpoints
    @classmethod
    def from_pretrained(cls, name_or_dir, override_args=None):
        """Load GPT-2 weights from a Hugging Face directory (config.json + model.safetensors or pytorch_model.bin)
        or by name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a hub id) from the local Hugging Face cache.
        override_args: only {"dropout": p}, for fine-tuning."""
        override_args = override_args or {}
        if set(override_args) - {"dropout"}:
            raise ValueError(f"override_args may only set 'dropout', got {sorted(override_args)}")
        path = name_or_dir if os.path.isdir(name_or_dir) else hf_cache_dir(name_or_dir)
        config_path = os.path.join(path, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{config_path} not found: not a Hugging Face model directory")
        with open(config_path) as f:
            hf = json.load(f)
        config = GPTConfig(**{**config_from_hf(hf, config_path), **override_args})  # an override wins over config.json
        model = cls(config)
        model.load_hf_state_dict(read_hf_weights(path))
        return model

    @classmethod
    def from_checkpoint(cls, ckpt):
        """The GPT stored in a checkpoint dict (checkpoints.py's layout; nanoGPT's `_orig_mod.` keys too)."""
        missing = [k for k in ("model_args", "model") if k not in ckpt]
        if missing:
            raise ValueError(f"not a train.py checkpoint: no {' or '.join(repr(k) for k in missing)} in it "
                             f"(its keys: {', '.join(map(str, ckpt))})")
        try:
            model = cls(GPTConfig(**ckpt["model_args"]))
            state_dict = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
            model.load_state_dict(state_dict)
        except (TypeError, RuntimeError) as e:  # an unknown model_args key, or weights of another shape
            raise ValueError(f"the checkpoint's model does not match its model_args: {e}") from None
        return model

    def load_hf_state_dict(self, sd):
        """Copy a Hugging Face GPT-2 state_dict into this model, transposing its Conv1D (in, out) weights."""
        sd = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v for k, v in sd.items()
              if not k.endswith((".attn.bias", ".attn.masked_bias"))}  # causal-mask buffers of older versions
        ours = self.state_dict()
        if self.config.tie_embeddings:  # often not stored: it is wte
            sd.pop("lm_head.weight", None)
            ours.pop("lm_head.weight")
        missing, unexpected = sorted(set(ours) - set(sd)), sorted(set(sd) - set(ours))
        if missing or unexpected:
            raise ValueError(f"checkpoint does not match the config: missing keys {missing[:5]}, "
                             f"unexpected keys {unexpected[:5]}")
        with torch.no_grad():
            for k, v in sd.items():
                if k.endswith(CONV1D_WEIGHTS):
                    v = v.t()
                if v.shape != ours[k].shape:
                    raise ValueError(f"{k}: checkpoint shape {tuple(v.shape)} != model shape {tuple(ours[k].shape)}"
                                     " (config.json disagrees with the weights)")
                ours[k].copy_(v)

    def save_pretrained(self, out_dir):
        """Write config.json + pytorch_model.bin in Hugging Face GPT-2 layout (atomically, file by file)."""
        cfg = self.config
        if cfg.rmsnorm or cfg.rope or cfg.swiglu or not cfg.tie_embeddings:
            raise ValueError("save_pretrained writes GPT-2's format, which has no RMSNorm, RoPE, SwiGLU or untied "
                             "head: save a train.py checkpoint for such models")
        eos = 50256 if cfg.vocab_size > 50256 else None
        hf = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
              "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
              "n_inner": cfg.n_inner, "activation_function": "gelu" if cfg.exact_gelu else "gelu_new",
              "layer_norm_epsilon": cfg.norm_eps, "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
              "attn_pdrop": cfg.dropout, "tie_word_embeddings": True, "bos_token_id": eos, "eos_token_id": eos}
        sd = {}
        for k, v in self.state_dict().items():
            if k == "lm_head.weight":  # tied: it is wte, and Hugging Face ties it again on loading
                continue
            sd[k] = (v.t() if k.endswith(CONV1D_WEIGHTS) else v).detach().cpu().contiguous().clone()
            if not cfg.bias and k.endswith(".weight") and not k.endswith(("wte.weight", "wpe.weight")):
                # GPT-2 always has biases: zeros are exactly "no bias"
                sd[k[:-len("weight")] + "bias"] = torch.zeros(sd[k].shape[-1 if k.endswith(CONV1D_WEIGHTS) else 0])
        os.makedirs(out_dir, exist_ok=True)
        atomic_write(os.path.join(out_dir, "config.json"), lambda f: f.write(json.dumps(hf, indent=2).encode()))
        atomic_write(os.path.join(out_dir, "pytorch_model.bin"), lambda f: torch.save(sd, f))


def pad_vocab_size(n_vocab, multiple=64):
    """The embedding's row count for a tokenizer of n_vocab ids: rounded up, as matmul kernels like
    multiples of 64 (nanoGPT's 50257 -> 50304). The extra rows are never a target, so they learn nothing."""
    return math.ceil(n_vocab / multiple) * multiple


def load_model(init_from, out_dir, device):
    """-> (GPT in eval mode on device, its tokenizer) for resume (out_dir/ckpt.pt), a GPT-2 name, or a
    directory: a train.py out_dir (it holds ckpt.pt) or a Hugging Face one."""
    if init_from != "resume" and os.path.isfile(os.path.join(init_from, "ckpt.pt")):
        init_from, out_dir = "resume", init_from
    if init_from == "resume":
        ckpt = load_checkpoint(os.path.join(out_dir, "ckpt.pt"), map_location=device)
        if "tokenizer" not in ckpt:
            raise ValueError(f"{out_dir}/ckpt.pt has no 'tokenizer' spec: it was not written by this train.py")
        model, tok = GPT.from_checkpoint(ckpt), tokenizer_from_spec(ckpt["tokenizer"])
    elif init_from in GPT2_NAMES or os.path.isdir(init_from):
        model, tok = GPT.from_pretrained(init_from), gpt2_tokenizer()
    else:
        # no flag name: sample.py's --init_from and hellaswag.py's --model both end up here
        raise ValueError(f"model {init_from!r} not found: expected resume, one of {', '.join(GPT2_NAMES)}, "
                         "or an existing directory (a train.py out_dir or a Hugging Face GPT-2 one)")
    if model.config.vocab_size < tok.n_vocab:
        raise ValueError(f"the model's vocab_size={model.config.vocab_size} is smaller than its tokenizer's "
                         f"{tok.n_vocab}: wrong tokenizer for this model")
    return model.to(device).eval(), tok


def decode_generated(tok, ids):
    """Text of generated ids. A model's vocab_size is padded past its tokenizer's (pad_vocab_size), and a
    barely trained model may sample one of those ids, which no text decodes to: shown as <|unused ID|>."""
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
    if top_p is not None:  # nucleus: the smallest set of likeliest tokens whose probability reaches top_p
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # the mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)


def config_from_hf(hf, config_path):
    """GPTConfig fields from a Hugging Face GPT-2 config.json dict; anything we do not implement is an error."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{config_path}: model_type {hf['model_type']!r} is not gpt2")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"{config_path}: activation_function {activation!r} is not supported")
    if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
        raise ValueError(f"{config_path}: only the standard 1/sqrt(D) attention scaling is supported")
    return dict(block_size=hf.get("n_positions", 1024), vocab_size=hf.get("vocab_size", 50257),
                n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=hf.get("n_embd", 768),
                n_inner=hf.get("n_inner"), norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                exact_gelu=activation == "gelu", tie_embeddings=hf.get("tie_word_embeddings", True), dropout=0.0)


def hf_cache_dir(name):
    """The snapshot directory of a model in the local Hugging Face hub cache (nothing is downloaded)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
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
    raise FileNotFoundError(f"{name!r} is neither a directory nor a model in the Hugging Face cache {hub} "
                            f"(looked for {', '.join(repo_ids)}); downloads are not done here: copy the model "
                            "there or pass a directory with config.json and model.safetensors")


def read_hf_weights(path):
    """The state_dict of a Hugging Face model directory: model.safetensors (possibly sharded) or pytorch_model.bin."""
    files = [os.path.join(path, "model.safetensors")]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = [os.path.join(path, name) for name in sorted(set(json.load(f)["weight_map"].values()))]
    if all(os.path.isfile(f) for f in files):
        try:  # only needed for this format (installed with transformers, or by requirements-dev.txt)
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{files[0]} is in the safetensors format: `pip install safetensors` to read it") from None
        return {k: v for f in files for k, v in load_file(f).items()}
    bin_path = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(bin_path):
        return torch.load(bin_path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no weights in {path}: expected model.safetensors or pytorch_model.bin")


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Greedy continuation of token ids with GPT-2 weights.")
    parser.add_argument("model", help="Hugging Face GPT-2 directory or cached name (gpt2, gpt2-medium, ...)")
    parser.add_argument("--prompt_ids", default="50256", help="comma-separated token ids")
    parser.add_argument("--max_new_tokens", type=int, default=20)
    args = parser.parse_args()
    try:
        gpt = GPT.from_pretrained(args.model).eval()
        prompt = torch.tensor([[int(t) for t in args.prompt_ids.split(",")]])
        print(f"{gpt.get_num_params(non_embedding=False):,} parameters")
        print(gpt.generate(prompt, args.max_new_tokens, temperature=0)[0].tolist())
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
