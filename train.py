"""Pretrain a GPT: the same script on a laptop CPU, one GPU, or many GPUs (DDP through torchrun).

    python data/shakespeare_char/prepare.py
    python train.py config/train_shakespeare_char_cpu.py                      # CPU, a few minutes
    python train.py config/train_shakespeare_char.py                          # one GPU
    torchrun --standalone --nproc_per_node=2 train.py config/train_shakespeare_char.py --device=cpu
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py    # GPT-2 124M on 8 GPUs

nanoGPT's option names and behaviour (see DEFAULT_CONFIG; configurator.py parses the
command line), made robust:
- every batch is a function of (seed, iteration, micro-step, rank): N processes see exactly the
  global batch that one process with N times the gradient accumulation sees, and a resumed run
  sees the batches it would have seen;
- checkpoints are written atomically and hold the RNG states, so `--init_from=resume` continues
  the identical loss curve, and a run killed while saving keeps its previous checkpoint;
- log lines: the loss averaged over the whole global batch, lr, time, tokens/s, MFU (CUDA) and
  the time left; the same, without MFU, as rows of `out_dir/log.jsonl`;
- nothing is lost: one run holds out_dir at a time (run.lock), a fresh run never replaces a
  checkpoint unless `--overwrite=True`, a run whose loss turns nan stops before saving, and
  `--init_from=resume` continues with the checkpoint's config (a `--key=value` given wins).

The pieces (get_lr, clip_grad_norm, get_batch, setup_ddp, autocast_context, checkpoints,
JsonlLogger) are shared with sft.py and hellaswag.py; the training loop is `main(config)`.
"""
import json
import math
import os
import pickle
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

import hellaswag
from bpe import tokenizer_from_spec
from checkpoints import (gather_state, load_checkpoint, load_optimizer_state, make_checkpoint,
                         save_checkpoint)
from configurator import apply_overrides, quiet_broken_pipe
from lora import apply_lora, count_params, merge_state_dict
from model import GPT, GPTConfig, pad_vocab_size
from runtime import (JsonlLogger, all_ranks, autocast_context, claim_out_dir, duration, is_master,
                     pick_device, pick_dtype, plot_log, print0, rng_states, set_rng_states,
                     setup_ddp, shard_model, start_wandb, teardown_ddp)

HERE = os.path.dirname(os.path.abspath(__file__))

# scale and memory: the switches train.py and sft.py share (see prepare_model)
SCALE_CONFIG = dict(
    fsdp=False,  # under torchrun: shard weights, gradients and AdamW state over processes (FSDP2)
    activation_checkpointing=False,  # recompute each block's activations in backward: less memory
    lora_rank=0,  # > 0: train LoRA adapters of this rank (lora.py), every other weight frozen
    lora_alpha=16.0,  # the adapters' scale is lora_alpha / lora_rank
    lora_targets="attn,mlp",  # attn, mlp, or layers: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    wandb_log=False,  # mirror log.jsonl's rows to Weights & Biases (pip install wandb)
    wandb_project="scratchgpt",
    wandb_run_name="",
)

DEFAULT_CONFIG = dict(
    # I/O
    out_dir="out",
    eval_interval=2000,
    log_interval=1,
    eval_iters=200,  # batches per split for each loss estimate
    eval_only=False,  # evaluate once, then exit
    always_save_checkpoint=True,  # save at every evaluation, not only when the val loss improved
    init_from="scratch",  # scratch | resume (out_dir/ckpt.pt) | gpt2..gpt2-xl | a HF GPT-2 dir
    overwrite=False,  # a fresh run may replace out_dir's ckpt.pt and log.jsonl (else: an error)
    # data
    dataset="openwebtext",  # data/<dataset>/{train,val}.bin and meta.json, or a path to such a dir
    gradient_accumulation_steps=5 * 8,  # micro-steps per iteration over ALL ranks; split among them
    batch_size=12,  # sequences per micro-step
    block_size=1024,
    # model (GPTConfig)
    n_layer=12,
    n_head=12,
    n_embd=768,
    dropout=0.0,
    bias=False,
    # AdamW
    learning_rate=6e-4,
    max_iters=600000,
    weight_decay=1e-1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,  # 0.0 disables clipping
    # learning rate: linear warmup, then cosine decay to min_lr at lr_decay_iters
    decay_lr=True,
    warmup_iters=2000,
    lr_decay_iters=600000,
    min_lr=6e-5,
    # system
    backend=None,  # DDP backend; None: nccl on CUDA, gloo otherwise
    ddp_timeout=1800,  # seconds a process waits for the others (a save, a stuck rank), then fails
    device=None,  # None: cuda, then mps, then cpu
    dtype=None,  # None: bfloat16 on CUDA (float16 + grad scaler without bf16), float32 elsewhere
    compile=False,  # torch.compile the model (worth it on GPUs)
    seed=1337,
    **SCALE_CONFIG,  # fsdp, activation_checkpointing, lora_*, wandb_*
    # HellaSwag accuracy during training (hellaswag.py); 0 = never
    hellaswag_interval=0,
    hellaswag_path="data/hellaswag/hellaswag_val.jsonl",
    hellaswag_limit=0,  # first N examples; 0 = all
    hellaswag_batch_size=8,
)


# --------------------------------------------------------------------------------------- the pieces
def get_lr(it, max_lr, min_lr, warmup_iters, decay_iters):
    """Learning rate at iteration it: linear warmup from 0 to max_lr over warmup_iters, cosine
    decay from max_lr to min_lr until decay_iters, then min_lr. Warmup keeps the first, noisy Adam
    steps small."""
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    if it >= decay_iters:
        return min_lr
    progress = (it - warmup_iters) / (decay_iters - warmup_iters)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def grad_norm(grads):
    """The global L2 norm of a list of gradients (a float32 tensor: no GPU->CPU sync).

    Under FSDP each gradient is a DTensor of which this rank holds one shard: each rank adds up the
    squares of its shards and one all-reduce adds the ranks' sums."""
    local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), dtype=torch.float32) for g in local])
    if not any(isinstance(g, DTensor) for g in grads):
        return torch.linalg.vector_norm(norms)
    squares = norms.square().sum()
    dist.all_reduce(squares)
    return squares.sqrt()


def clip_grad_norm(parameters, max_norm):
    """Scale all gradients together so that their global L2 norm is at most max_norm;
    return the norm before.

    One rare huge gradient (a bad batch) then moves the weights no further than a normal step would.
    Parameters without a gradient (frozen, unused) are skipped.
    Same result as torch.nn.utils.clip_grad_norm_."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total_norm = grad_norm(grads)
    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)  # a tensor: no GPU->CPU sync
    for g in grads:
        g = g.to_local() if isinstance(g, DTensor) else g
        g.detach().mul_(scale.to(g.dtype))
    return total_norm


# ----------------------------------------------------------------------- references, written out
# The two pieces below are the by-hand references graded by tests/adapters.py (CS336's interface):
# the training run itself uses torch's fused equivalents (F.cross_entropy in GPT.forward,
# torch.optim.AdamW from GPT.configure_optimizers), which the tests prove equal to them.
def cross_entropy(logits, targets):
    """Mean of -log softmax(logits)[target]: logits (..., V), targets (...) -> scalar.

    What F.cross_entropy computes, written out. Subtracting each row's max before exp()
    (log-sum-exp trick) keeps it finite for huge logits:
    log softmax(z)_t = (z_t - max z) - log sum exp(z - max z)."""
    logits = logits.float().reshape(-1, logits.size(-1))  # (N, V)
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    log_z = shifted.exp().sum(dim=-1).log()  # (N,)
    return (log_z - shifted.gather(-1, targets.reshape(-1, 1)).squeeze(-1)).mean()


class AdamW(torch.optim.Optimizer):
    """AdamW written out: Adam's update plus decoupled weight decay (Loshchilov & Hutter, 2019).

    The same arithmetic as torch.optim.AdamW; train.py uses model.configure_optimizers (torch's
    fused kernel), this class is the readable reference for it."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamW needs lr, eps, weight_decay >= 0 and betas in [0, 1); "
                             f"got lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = (group["lr"], group["betas"], group["eps"],
                                           group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)  # m: running mean of gradients
                    # v: running mean of squared gradients
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                # decay the weight itself, not through the gradient (the "W" in AdamW)
                p.mul_(1.0 - lr * wd)
                m.lerp_(p.grad, 1.0 - beta1)  # m = beta1 m + (1 - beta1) g
                # v = beta2 v + (1 - beta2) g^2
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                # m and v start at 0, so early on they are biased towards 0: divide by (1 - beta^t)
                denom = (v.sqrt() / math.sqrt(1.0 - beta2 ** t)).add_(eps)
                p.addcdiv_(m, denom, value=-lr / (1.0 - beta1 ** t))
        return loss


def get_batch(data, batch_size, block_size, device, generator=None):
    """batch_size windows at uniformly random starts of data
    (1-D token ids, e.g. a uint16 np.memmap).

    -> x, y: (B, T) int64 on device, y = x shifted left by one (the next token at every position).
    Every start 0 .. len(data) - block_size - 1 is possible
    (the window's last token is only a target)."""
    n_starts = len(data) - block_size
    if n_starts < 1:
        raise ValueError(f"{len(data)} tokens of data are too few for block_size={block_size}: "
                         "use more data or a smaller block_size")
    ix = torch.randint(n_starts, (batch_size,), generator=generator).numpy()
    # (B, T+1) gathered in one go
    windows = np.asarray(data)[ix[:, None] + np.arange(block_size + 1)]
    windows = torch.from_numpy(windows.astype(np.int64))
    x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
    if torch.device(device).type == "cuda":  # pinned memory lets the copy overlap with compute
        return (x.pin_memory().to(device, non_blocking=True),
                y.pin_memory().to(device, non_blocking=True))
    return x.to(device), y.to(device)


def batch_generator(seed, *keys):
    """A torch.Generator seeded from (seed, *keys) non-negative ints,
    e.g. (seed, iteration, micro-step)."""
    # well-mixed 64 bits
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dict, list, tuple, str, int, float, bool, None): every class or
    function a pickle names is refused, since building one is how a crafted pickle runs code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it names {module}.{name}, and only plain data is read")


def read_meta_file(path):
    """The meta of a meta.json, or of an older meta.pkl read as plain data only -> a dict of
    vocab_size, tokenizer (a spec; nanoGPT's itos becomes a char spec) and dtype. Anything else is
    one ValueError naming the file: reading a dataset's metadata must never run code."""
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
        else:
            with open(path, "rb") as f:
                meta = PlainDataUnpickler(f).load()
    except Exception as e:  # a broken or hostile file fails in many ways, all meaning the same
        raise ValueError(f"{path} is not a readable meta file ({e}): prepare the dataset again "
                         "(python data/<dataset>/prepare.py writes meta.json)") from None
    meta = meta if isinstance(meta, dict) else {}
    itos = meta.get("itos")  # nanoGPT's shakespeare_char: {id: character}
    if "tokenizer" not in meta and isinstance(itos, dict) and all(
            type(i) is int and isinstance(ch, str) for i, ch in itos.items()):
        chars = "".join(itos[i] for i in sorted(itos))
        meta = dict(meta, tokenizer={"kind": "char", "chars": chars})
    vocab_size, spec = meta.get("vocab_size"), meta.get("tokenizer")
    dtype = meta.get("dtype", "uint16")  # meta.pkl files have none: their ids are uint16
    if type(vocab_size) is not int or vocab_size < 1 or not isinstance(spec, dict) \
            or dtype != "uint16":
        raise ValueError(f"{path} is not a usable meta file (vocab_size {vocab_size!r}, tokenizer "
                         f"{str(spec)[:40]}, dtype {dtype!r}; expected a positive int, a spec and "
                         "'uint16'): prepare the dataset again (python data/<dataset>/prepare.py)")
    return {"vocab_size": vocab_size, "tokenizer": spec, "dtype": dtype}


def load_meta(dataset):
    """(data_dir, meta) of a prepared dataset, checking that train.bin and val.bin exist.

    meta comes from meta.json (data/*/prepare.py), else from an older meta.pkl (ours or nanoGPT's),
    else it is GPT-2's (nanoGPT's openwebtext has none)."""
    data_dir = dataset if os.sep in dataset else os.path.join(HERE, "data", dataset)
    for split in ("train", "val"):
        path = os.path.join(data_dir, f"{split}.bin")
        if not os.path.isfile(path):
            script = os.path.join("data", os.path.basename(dataset.rstrip(os.sep)), "prepare.py")
            raise FileNotFoundError(f"{path} not found: prepare the dataset first "
                                    f"(python {script})")
    for name in ("meta.json", "meta.pkl"):
        if os.path.isfile(os.path.join(data_dir, name)):
            return data_dir, read_meta_file(os.path.join(data_dir, name))
    print0(f"no meta.json in {data_dir}: assuming GPT-2 tokens (vocab 50257)")
    return data_dir, {"vocab_size": 50257, "tokenizer": {"kind": "gpt2"}, "dtype": "uint16"}


def optimizer_step(optimizer, scaler, parameters, grad_clip):
    """One optimizer step on the accumulated gradients -> their global norm before clipping (a
    tensor). Unscaled first, so that the norm and clipping see the true gradients, not fp16-scaled
    ones; watching the norm shows whether training is stable (spikes come before a blow-up)."""
    scaler.unscale_(optimizer)
    if grad_clip > 0.0:
        norm = clip_grad_norm(parameters, grad_clip)
    else:
        norm = grad_norm([p.grad for p in parameters if p.grad is not None] or [torch.zeros(1)])
    scaler.step(optimizer)  # skipped by the scaler if a float16 gradient overflowed
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return norm


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------ runs that lose nothing
def weights_finite(model):
    """Whether every weight of model is finite on every rank -> a bool that all ranks agree on.
    Under FSDP each rank checks its own shards and one all-reduce combines the answers."""
    local = [p.to_local() if isinstance(p, DTensor) else p for p in model.parameters()]
    ok = torch.stack([torch.isfinite(p.detach()).all() for p in local]).all().to(torch.int32)
    if dist.is_initialized():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def stop_if_diverged(iter_num, losses, learning_rate, model=None):
    """Raise FloatingPointError when a loss in losses (or, given model, a weight) is nan or inf
    -> None otherwise. A diverged run stops here, before its weights replace the last good
    checkpoint. With model, every rank must call it (the weight check is collective)."""
    bad = [f"{name} {value}" for name, value in losses.items() if not math.isfinite(value)]
    if not bad and model is not None and not weights_finite(model):
        bad = ["a weight that is nan or inf"]
    if bad:
        raise FloatingPointError(
            f"training diverged at iteration {iter_num} ({', '.join(bad)}), so no checkpoint was "
            f"written over the last good one: lower learning_rate={learning_rate:g}, e.g. "
            f"--learning_rate={learning_rate / 10:g}, and resume or start again")


def rank_from_env():
    """This process's rank as torchrun set it (RANK; 0 without torchrun) -> an int, known before
    and after the process group: the command line's messages and errors come from rank 0 only."""
    return int(os.environ.get("RANK", "0"))


def exit_with(error):
    """Exit the command line with one line, "error: ...", and status 1 -> never returns. Rank 0
    says it at once. Another rank first gives rank 0 a few seconds: torchrun stops every process
    once one fails, so when rank 0 failed too this rank is stopped before it repeats the line,
    and an error that only this rank met is still said."""
    if rank_from_env() != 0:
        time.sleep(5)
    raise SystemExit(f"error: {error}")


def given_keys(argv):
    """The config keys that argv sets as --key=value -> a set: on resume, only they override the
    checkpoint's config."""
    return {arg[2:].partition("=")[0] for arg in argv if arg.startswith("--") and "=" in arg}


# where and how this run executes, not what it trains: on resume, this run's, never the checkpoint's
RUN_KEYS = ("out_dir", "init_from", "overwrite", "device", "dtype", "backend", "compile",
            "ddp_timeout", "num_threads")
SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias")  # a resumed model keeps them


def resumed_config(config, given):
    """The config to resume with -> the checkpoint's config, except for the keys given on the
    command line and RUN_KEYS, each difference printed: a resumed run continues its own schedule,
    not a config file's. A given model shape that differs from the checkpoint's is a ValueError
    (the checkpoint's model is what resumes). Without init_from=resume or a checkpoint: config."""
    path = os.path.join(config["out_dir"], "ckpt.pt")
    if config["init_from"] != "resume" or not os.path.isfile(path):
        return config  # init_model says that the checkpoint is missing
    ckpt = load_checkpoint(path, mmap=True)  # its config, without reading the weights
    changed = [f"{k}={config[k]!r} (the checkpoint's model has {ckpt['model_args'][k]!r})"
               for k in SHAPE_KEYS if k in given and config[k] != ckpt["model_args"].get(k)]
    if changed:
        raise ValueError(f"init_from=resume continues the checkpoint's model, whose shape cannot "
                         f"change: {', '.join(changed)}; drop those settings, or train a new model "
                         "in another --out_dir")
    saved, ours = ckpt.get("config", {}), set(given) | set(RUN_KEYS)
    merged = {k: v if k in ours or k not in saved else saved[k] for k, v in config.items()}
    for k in config:
        if k in saved and saved[k] != config[k] and rank_from_env() == 0:
            why = ("given on the command line" if k in given else "this run's" if k in RUN_KEYS
                   else f"the checkpoint's, over {config[k]!r}: give --{k}=... to change it")
            print(f"resume: {k} = {merged[k]!r} ({why}; the checkpoint had {saved[k]!r})")
    return merged


def split_accumulation(config, world_size):
    """config with gradient_accumulation_steps rounded up to a multiple of world_size -> a config
    whose micro-steps the processes share evenly (said once, on rank 0, when it changed: the global
    batch grows with it)."""
    steps = config["gradient_accumulation_steps"]
    rounded = -(-steps // world_size) * world_size
    if rounded != steps:
        print0(f"gradient_accumulation_steps={steps} is not a multiple of the {world_size} "
               f"processes: using {rounded} ({rounded // world_size} per process)")
    return dict(config, gradient_accumulation_steps=rounded)


def warn_if_slow(c, device, seconds_per_iter, iters_left):
    """The warning printed (once, on rank 0) when a run on the CPU is predicted to take hours
    -> that line, or None: a GPU-sized config runs on a CPU too, only for days."""
    left = seconds_per_iter * iters_left
    if torch.device(device).type != "cpu" or left < 3600:
        return None
    text = (f"warning: at {seconds_per_iter:.2f}s per iteration this CPU run needs about "
            f"{duration(left)} more: its config (n_layer={c.n_layer}, n_embd={c.n_embd}, "
            f"block_size={c.block_size}, batch_size={c.batch_size}) is meant for a GPU; on a CPU "
            "use a smaller one (config/train_shakespeare_char_cpu.py) or fewer --max_iters")
    print0(text)
    return text


# ----------------------------------------------------------------------------------------- training
LOWEST = dict(max_iters=0, seed=0, eval_interval=1, log_interval=1, eval_iters=1,
              gradient_accumulation_steps=1, batch_size=1, block_size=1, learning_rate=0,
              min_lr=0, weight_decay=0, grad_clip=0, warmup_iters=0, ddp_timeout=1)


def check_config(c):
    """Raise one clear ValueError for a setting out of range -> None, before anything starts."""
    for key, lowest in LOWEST.items():
        if getattr(c, key) < lowest:
            raise ValueError(f"{key}={getattr(c, key)} must be >= {lowest}")
    if c.decay_lr and c.min_lr > c.learning_rate:
        raise ValueError(f"min_lr={c.min_lr} is above learning_rate={c.learning_rate}: the rate "
                         "decays to min_lr, so make it at most learning_rate (usually a tenth)")
    check_scale_options(c)


def main(config):
    """Train with a config dict (DEFAULT_CONFIG with overrides) -> the last evaluation's losses.
    Under torchrun, gradient_accumulation_steps is rounded up to a multiple of the processes."""
    c = SimpleNamespace(**config)
    check_config(c)
    ddp, rank, local_rank, world_size, device = setup_ddp(pick_device(c.device), c.backend,
                                                          c.ddp_timeout)
    try:
        config = split_accumulation(config, world_size)
        c = SimpleNamespace(**config)
        with claim_out_dir(c.out_dir, c.init_from, c.overwrite):
            return train(c, config, ddp, rank, local_rank, world_size, device)
    finally:
        teardown_ddp()


def check_scale_options(c):
    """Clear errors for FSDP and LoRA settings that cannot work, before any process group starts."""
    if c.fsdp and "RANK" not in os.environ:
        raise ValueError("fsdp=True shards the model over processes: launch with torchrun, e.g. "
                         "torchrun --standalone --nproc_per_node=2 train.py ... --fsdp=True")
    if c.fsdp and c.dtype == "float16":
        raise ValueError("fsdp=True computes in bfloat16 on CUDA (float32 elsewhere); float16 "
                         "would need a sharded loss scaler: use --dtype=bfloat16")
    if c.lora_rank < 0:
        raise ValueError(f"lora_rank={c.lora_rank} must be >= 1 (or 0: no LoRA, every weight "
                         "trains)")


def prepare_model(raw_model, c, device, dtype, ddp, local_rank):
    """LoRA adapters (lora_rank > 0), the device, FSDP shards (fsdp) or DDP (under torchrun),
    torch.compile, and AdamW over what trains -> (the model to call, the optimizer, the fp16 loss
    scaler). raw_model stays the module whose state is checkpointed (no wrapper prefixes)."""
    device_type = torch.device(device).type
    lora = ""
    if c.lora_rank:
        n = apply_lora(raw_model, c.lora_rank, c.lora_alpha, c.lora_targets)
        lora = f" (LoRA rank {c.lora_rank} on {n} layers)"
    trainable, total = count_params(raw_model)
    print0(f"trainable_params {trainable:,} of total_params {total:,}{lora}")
    raw_model.to(device)
    raw_model.activation_checkpointing = c.activation_checkpointing
    if c.fsdp:
        shard_model(raw_model, raw_model.transformer.h, device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == "float16")  # fp16: loss scaling
    optimizer = raw_model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2),
                                               device_type)
    model = raw_model
    if c.compile:
        print0("compiling the model...")
        model = torch.compile(model)
    if ddp and not c.fsdp:
        model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)
    return model, optimizer, scaler


def init_model(c, meta, rank):
    """-> (model on the CPU, checkpoint dict or None):
    from scratch, out_dir/ckpt.pt, or GPT-2 weights."""
    if c.init_from == "scratch":
        torch.manual_seed(c.seed)  # identical initial weights on every rank
        model = GPT(GPTConfig(block_size=c.block_size,
                              vocab_size=pad_vocab_size(meta["vocab_size"]),
                              n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
                              dropout=c.dropout, bias=c.bias))
        torch.manual_seed(c.seed + rank)
        return model, None
    if c.init_from == "resume":
        path = os.path.join(c.out_dir, "ckpt.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init_from=resume: no checkpoint at {path} "
                                    "(train with init_from=scratch first, or point --out_dir at "
                                    "the run's directory)")
        print0(f"resuming from {path}")
        ckpt = load_checkpoint(path)
        ckpt["model_args"]["dropout"] = c.dropout  # not part of the shape: this run's
        return GPT.from_checkpoint(ckpt), ckpt
    # GPT-2 weights by name or Hugging Face directory
    print0(f"initializing from GPT-2 weights {c.init_from!r}")
    model = GPT.from_pretrained(c.init_from, {"dropout": c.dropout})
    name, ours = c.init_from, model.config
    if c.block_size > ours.block_size:
        raise ValueError(f"block_size={c.block_size} is larger than {name}'s {ours.block_size}")
    if meta["vocab_size"] > ours.vocab_size:
        raise ValueError(f"the dataset's vocab_size {meta['vocab_size']} is larger than {name}'s "
                         f"{ours.vocab_size}: prepare it with GPT-2's tokenizer")
    if c.block_size < ours.block_size:
        model.crop_block_size(c.block_size)
    return model, None


def load_splits(data_dir, block_size):
    """{"train", "val"}: the token files as read-only uint16 memmaps
    (nothing is read until sampled)."""
    splits = {s: np.memmap(os.path.join(data_dir, f"{s}.bin"), dtype=np.uint16, mode="r")
              for s in ("train", "val")}
    for split, data in splits.items():
        if len(data) <= block_size:
            raise ValueError(f"{data_dir}/{split}.bin has {len(data)} tokens, too few for "
                             f"block_size={block_size}")
    return splits


def restore_state(ckpt, raw_model, optimizer, scaler, rank, world_size, device):
    """Continue where the checkpoint stopped:
    optimizer moments, loss scale, this rank's RNG streams."""
    if any(".lora_" in n for n, _ in raw_model.named_parameters()):  # the weights hold the merge
        print0("LoRA resumes with new adapters on the merged weights (the model is unchanged); "
               "their AdamW moments start again")
    else:
        load_optimizer_state(raw_model, optimizer, ckpt["optimizer"])
    if "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt.get("rng", [])  # nanoGPT's checkpoints have none
    if len(rng) == world_size:  # continue every rank's dropout stream where it was
        set_rng_states(rng[rank], device)
    else:
        print0(f"checkpoint has RNG states of {len(rng)} processes, not {world_size}: "
               "dropout masks will differ from the original run (the data order does not)")


@torch.no_grad()
def estimate_loss(model, batch, eval_iters, ctx, rank, world_size, device):
    """Mean loss over eval_iters fixed batches per split;
    the batches are shared out among the ranks."""
    model.eval()
    out = {}
    for s, split in enumerate(("train", "val")):
        total = torch.zeros(2, device=device)  # (sum of losses, number of batches)
        for k in range(rank, eval_iters, world_size):
            # stream 1 + s: evaluation batches, apart from training's 0
            x, y = batch(split, 1 + s, k)
            with ctx:
                _, loss = model(x, y)
            total += torch.stack((loss.float(), torch.ones((), device=device)))
        if world_size > 1:
            dist.all_reduce(total)
        out[split] = (total[0] / total[1]).item()
    model.train()
    return out


def hellaswag_evaluator(c, meta, raw_model, ctx, rank, world_size, device):
    """A function that scores HellaSwag during training (hellaswag_interval > 0), else None."""
    if c.hellaswag_interval <= 0:
        return None
    examples = hellaswag.load_examples(c.hellaswag_path, c.hellaswag_limit or None)
    encode = tokenizer_from_spec(meta["tokenizer"]).encode_ordinary

    def evaluate():  # hellaswag.evaluate switches to eval mode (no dropout) and back itself
        with ctx:
            return hellaswag.evaluate(raw_model, encode, examples, device, c.hellaswag_batch_size,
                                      rank, world_size)
    return evaluate


def save_run(path, config, raw_model, optimizer, scaler, tokenizer, iter_num, best_val_loss,
             device, **extra):
    """Write a run's checkpoint to path on rank 0 -> the model's state_dict there (None on other
    ranks). Every rank calls it: FSDP gathers, and every rank's RNG states go in for resume."""
    rng = all_ranks(rng_states(device))
    model_state, optimizer_state = gather_state(raw_model, optimizer)
    if not is_master():
        return None
    if config["lora_rank"]:  # an ordinary model for every other tool: W + (alpha / r) B A
        model_state = merge_state_dict(model_state, config["lora_alpha"])
    if scaler.is_enabled():
        extra["scaler"] = scaler.state_dict()
    save_checkpoint(path, make_checkpoint(model_state, optimizer_state, asdict(raw_model.config),
                                          tokenizer, config, iter_num, best_val_loss, rng,
                                          **extra))
    print0(f"saved checkpoint to {path}")
    return model_state


def train_iteration(model, raw_model, optimizer, scaler, batch, accum, rank, grad_clip, ctx,
                    iter_num):
    """accum micro-steps of forward and backward on this rank, then one optimizer step on the global
    batch -> (this rank's mean loss, the gradient norm): tensors (reading them waits)."""
    ddp, fsdp = isinstance(model, DDP), isinstance(raw_model, FSDPModule)
    loss_sum = torch.zeros((), device=next(raw_model.parameters()).device)
    for micro in range(accum):
        # global micro-step rank * accum + micro
        x, y = batch("train", 0, iter_num, rank * accum + micro)
        # DDP all-reduces gradients during backward;
        # on all but the last micro-step there is no need to
        last = micro == accum - 1
        if fsdp:  # FSDP reduce-scatters gradients in backward: likewise only on the last
            raw_model.set_requires_gradient_sync(last)
        with model.no_sync() if ddp and not last else nullcontext():
            with ctx:
                _, loss = model(x, y)
                loss = loss / accum  # gradients add up over micro-steps: scale to the mean
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    norm = optimizer_step(optimizer, scaler, raw_model.parameters(), grad_clip)
    return loss_sum, norm


def global_mean(loss_sum):
    """The loss of the whole global batch: the mean over ranks, as a float
    (waits for the device)."""
    if dist.is_initialized():
        dist.all_reduce(loss_sum)
        loss_sum /= dist.get_world_size()
    return loss_sum.item()


def log_iteration(logger, iter_num, loss, norm, lr, dt, tokens_per_iter, mfu, eta):
    """Print and log one iteration: loss, gradient norm, learning rate, time, tokens/s, and MFU
    and the time the run still needs, eta (printed only)."""
    tokens_per_sec = tokens_per_iter / dt
    mfu_text = f"{mfu * 100:.2f}%" if mfu >= 0 else "n/a"
    print0(f"iter {iter_num}: loss {loss:.4f}, grad_norm {norm:.4f}, lr {lr:.2e}, "
           f"time {dt * 1000:.2f}ms, {tokens_per_sec:,.0f} tok/s, mfu {mfu_text}, "
           f"eta {duration(eta)}")
    logger.log({"iter": iter_num, "loss": loss, "grad_norm": norm, "lr": lr, "dt_ms": dt * 1000,
                "tokens_per_sec": tokens_per_sec})


def log_eval(logger, iter_num, losses):
    """Print and log one evaluation: the train and val losses."""
    print0(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    logger.log({"iter": iter_num, "train_loss": losses["train"], "val_loss": losses["val"]})


def log_hellaswag(logger, iter_num, result):
    """Print and log one HellaSwag evaluation: acc and acc_norm."""
    print0(f"step {iter_num}: hellaswag acc {result['acc']:.4f}, "
           f"acc_norm {result['acc_norm']:.4f}")
    logger.log({"iter": iter_num, "hellaswag_acc": result["acc"],
                "hellaswag_acc_norm": result["acc_norm"]})


def train(c, config, ddp, rank, local_rank, world_size, device):
    """The run in this process: model, data and optimizer, then run_loop -> the last evaluation's
    losses. Every rank waits at the end for rank 0's checkpoint and plot, so that no rank tears
    the process group down while rank 0 still saves."""
    device_type = torch.device(device).type
    dtype = pick_dtype(device, c.dtype)
    ctx = autocast_context(device, dtype)
    # model init (same on all ranks: seeded there) and dropout (per rank)
    torch.manual_seed(c.seed + rank)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls for any float32 work left
        torch.backends.cudnn.allow_tf32 = True
    data_dir, meta = load_meta(c.dataset)

    # the model, its data, its optimizer
    raw_model, ckpt = init_model(c, meta, rank)
    iter_num, best_val_loss = (ckpt["iter_num"], ckpt["best_val_loss"]) if ckpt else (0, 1e9)
    block_size = raw_model.config.block_size
    if block_size != c.block_size:
        print0(f"block_size {block_size} from the checkpoint (config said {c.block_size})")
    tokens_per_iter = c.gradient_accumulation_steps * c.batch_size * block_size
    print0(f"{world_size} process(es) on {device}; tokens per iteration: {tokens_per_iter:,}")
    splits = load_splits(data_dir, block_size)
    model, optimizer, scaler = prepare_model(raw_model, c, device, dtype, ddp, local_rank)
    if ckpt is not None:
        restore_state(ckpt, raw_model, optimizer, scaler, rank, world_size, device)
        ckpt = None  # free the memory

    def batch(split, *keys):
        return get_batch(splits[split], c.batch_size, block_size, device,
                         batch_generator(c.seed, *keys))
    wandb_run = start_wandb(c.wandb_project, c.wandb_run_name, config) if c.wandb_log else None
    run = SimpleNamespace(
        model=model, raw_model=raw_model, optimizer=optimizer, scaler=scaler, batch=batch, ctx=ctx,
        meta=meta, rank=rank, world_size=world_size, device=device,
        tokens_per_iter=tokens_per_iter,
        hellaswag=hellaswag_evaluator(c, meta, raw_model, ctx, rank, world_size, device),
        logger=JsonlLogger(os.path.join(c.out_dir, "log.jsonl"), iter_num, wandb_run))
    losses = run_loop(c, config, run, iter_num, best_val_loss)
    if is_master() and os.path.isfile(run.logger.path):
        plot_log(c.out_dir)
    if dist.is_initialized():
        dist.barrier()
    return losses


def evaluate_and_save(c, config, run, iter_num, best_val_loss):
    """Estimate and log the losses, then checkpoint when they improved (or always_save_checkpoint)
    -> (the losses, the best val loss so far). A nan or inf loss, or weight about to be saved,
    stops the run instead: stop_if_diverged."""
    losses = estimate_loss(run.model, run.batch, c.eval_iters, run.ctx, run.rank, run.world_size,
                           run.device)
    log_eval(run.logger, iter_num, losses)
    save = (losses["val"] < best_val_loss or c.always_save_checkpoint) and iter_num > 0 \
        and not c.eval_only
    stop_if_diverged(iter_num, losses, c.learning_rate, run.raw_model if save else None)
    if save:
        best_val_loss = min(best_val_loss, losses["val"])
        save_run(os.path.join(c.out_dir, "ckpt.pt"), config, run.raw_model, run.optimizer,
                 run.scaler, run.meta["tokenizer"], iter_num, best_val_loss, run.device)
    return losses, best_val_loss


def run_loop(c, config, run, iter_num, best_val_loss):
    """Evaluate (and checkpoint) every eval_interval iterations, step in between, until max_iters
    -> the last evaluation's losses. Log lines end with an ETA from the mean time per iteration
    so far; after 3 iterations a CPU run that would take hours says so (warn_if_slow)."""
    accum = c.gradient_accumulation_steps // run.world_size  # micro-steps per process
    losses, running_mfu, local_iter, t_first = None, -1.0, 0, None
    while True:
        lr = get_lr(iter_num, c.learning_rate, c.min_lr, c.warmup_iters, c.lr_decay_iters) \
            if c.decay_lr else c.learning_rate
        set_lr(run.optimizer, lr)
        if iter_num % c.eval_interval == 0 or iter_num == c.max_iters:
            losses, best_val_loss = evaluate_and_save(c, config, run, iter_num, best_val_loss)
        if run.hellaswag and iter_num % c.hellaswag_interval == 0:
            log_hellaswag(run.logger, iter_num, run.hellaswag())
        if c.eval_only or iter_num >= c.max_iters:
            return losses
        t0 = time.time()
        t_first = t_first or t0
        loss_sum, norm = train_iteration(run.model, run.raw_model, run.optimizer, run.scaler,
                                         run.batch, accum, run.rank, c.grad_clip, run.ctx,
                                         iter_num)
        local_iter += 1
        if iter_num % c.log_interval == 0:
            loss = global_mean(loss_sum)  # waits for the device, so dt is the real step time
            stop_if_diverged(iter_num, {"loss": loss}, c.learning_rate)
            dt = time.time() - t0
            mfu = run.raw_model.estimate_mfu(c.batch_size * accum, dt) if local_iter > 3 else None
            if mfu is not None:
                running_mfu = mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * mfu
            eta = (time.time() - t_first) / local_iter * (c.max_iters - iter_num - 1)
            log_iteration(run.logger, iter_num, loss, norm.item(), lr, dt, run.tokens_per_iter,
                          running_mfu, eta)
        if local_iter == 3:  # enough iterations to predict the rest
            warn_if_slow(c, run.device, (time.time() - t_first) / 3, c.max_iters - iter_num - 1)
        iter_num += 1


if __name__ == "__main__":
    try:
        with quiet_broken_pipe():  # `python train.py ... | head` ends quietly
            argv = sys.argv[1:]
            main(resumed_config(apply_overrides(DEFAULT_CONFIG, argv), given_keys(argv)))
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        exit_with(e)
