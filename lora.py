"""LoRA by hand (Hu et al., 2021): fine-tune a big model by training two thin matrices per layer.

A frozen Linear layer y = x W^T (W: out x in) gets a low-rank update learned beside it:

    y = x W^T + (alpha / r) * (x A^T) B^T        A: r x in, B: out x r, r << in, out

Only A and B train, so the optimizer holds moments for r * (in + out) numbers per layer instead
of in * out, and the frozen weights need no gradients. B starts at zero: before the first step the
model is exactly the pretrained one. Afterwards W + (alpha / r) B A is an ordinary weight again
(`merge_state_dict`), so checkpoints and exports hold plain Linear layers that every tool reads.

    python sft.py config/sft_demo_cpu.py --lora_rank=8 --lora_alpha=16 --lora_targets=attn,mlp \
        --out_dir=out-sft-lora
"""
import math

import torch
import torch.nn as nn

# what --lora_targets may name: the Linear layers of each block, by their place in model.py
TARGETS = {"attn": ("attn.c_attn", "attn.c_proj"), "mlp": ("mlp.c_fc", "mlp.c_proj")}


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (alpha / rank) * B A."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        if not 1 <= rank <= min(base.in_features, base.out_features):
            most = min(base.in_features, base.out_features)
            raise ValueError(f"lora_rank={rank} must be in [1, {most}] for a {base.in_features} -> "
                             f"{base.out_features} layer")
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(base.weight.new_empty(rank, base.in_features))  # (r, in)
        self.lora_B = nn.Parameter(base.weight.new_zeros(base.out_features, rank))  # (out, r), zero
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init

    def forward(self, x):  # (..., in) -> (..., out)
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def merged_weight(self):
        """W + (alpha / r) B A: the ordinary weight that computes what this layer computes."""
        return self.base.weight + (self.lora_B @ self.lora_A) * self.scale  # (out, in)


def target_names(targets):
    """'attn,mlp' | 'attn' | 'mlp.c_fc,...' -> the layer suffixes to adapt; a name we do not know
    is an error that lists the ones we do."""
    known = {name for names in TARGETS.values() for name in names}
    out = []
    for t in (t.strip() for t in targets.split(",") if t.strip()):
        if t not in TARGETS and t not in known:
            names = ", ".join([*TARGETS, *sorted(known)])
            raise ValueError(f"lora_targets: {t!r} is not one of {names}")
        out += TARGETS.get(t, (t,))
    if not out:
        raise ValueError("lora_targets is empty: name attn, mlp, or layers such as attn.c_attn")
    return tuple(out)


def apply_lora(model, rank, alpha, targets="attn,mlp"):
    """Freeze every parameter of model, then put a LoRALinear around each targeted Linear layer.
    Returns the number of layers adapted; nothing matching the targets is an error."""
    suffixes = target_names(targets)
    model.requires_grad_(False)
    chosen = [(name, module) for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and name.endswith(suffixes)]
    if not chosen:
        raise ValueError(f"lora_targets={targets!r} matches no Linear layer of this model")
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, LoRALinear(module, rank, alpha))
    return len(chosen)


@torch.no_grad()
def merge_state_dict(sd, alpha):
    """A state_dict of an adapted model -> the plain model's: each LoRALinear's base weight plus
    (alpha / r) B A under the layer's own name, no lora_A/lora_B. What checkpoints and exports store
    (it also works on a state_dict gathered from FSDP shards)."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".lora_A") or key.endswith(".lora_B"):
            continue
        layer, sep, rest = key.partition(".base.")
        if sep and rest == "weight":
            A, B = sd[f"{layer}.lora_A"], sd[f"{layer}.lora_B"]  # (r, in), (out, r)
            value = value + (B.to(value.dtype) @ A.to(value.dtype)) * (alpha / A.size(0))
        out[f"{layer}.{rest}" if sep else key] = value
    return out


def count_params(model):
    """-> (trainable, total) parameter counts (a tied embedding counted once)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
