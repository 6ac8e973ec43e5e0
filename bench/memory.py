"""Peak memory of one training step, the same model trained four ways, beside the
bytes-per-parameter arithmetic that predicts it (a benchmark, not a test).

    python bench/memory.py                       # CPU: peak RSS growth during the step
    python bench/memory.py --device cuda         # GPU: torch.cuda.max_memory_allocated

plain: AdamW on every weight. activation checkpointing: each block's activations recomputed in
backward instead of kept. LoRA: rank-r adapters on attn+mlp, the base frozen. FSDP: 2 processes
(gloo on the CPU, nccl on GPUs), each holding half of the weights, gradients and AdamW state.
The step is the second one (the first allocates AdamW's moments, which are part of the peak too:
both are measured from the moment the model and optimizer exist, before the first step).
"""
import argparse
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lora import apply_lora, count_params  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from runtime import shard_model  # noqa: E402

MODES = ("plain", "activation checkpointing", "lora", "fsdp")


def rss_bytes(field):
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def reset_peak(device):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM to the current RSS
            f.write("5")


def peak_growth(device, base):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() - base
    return rss_bytes("VmHWM") - base


def local_bytes(tensors):
    """Bytes of the tensors held by this process (an FSDP DTensor: its local shard only)."""
    return sum((t.to_local() if hasattr(t, "to_local") else t).nbytes for t in tensors)


def training_state(model, optimizer):
    """Bytes of weights + gradients + AdamW moments this process holds: what 16 B/param predicts."""
    params = list(model.parameters())
    moments = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
               and v.dim() > 0]
    return local_bytes(params) + local_bytes(p.grad for p in params if p.grad is not None) + \
        local_bytes(moments)


def measure(mode, args, device):
    """-> (trainable params, total params, training state bytes, bytes the two steps added at their
    peak) in this process."""
    torch.manual_seed(0)
    config = GPTConfig(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd, bias=False)
    model = GPT(config)
    if mode == "lora":
        apply_lora(model, args.lora_rank, 2.0 * args.lora_rank, "attn,mlp")
    model.to(device)
    model.activation_checkpointing = mode == "activation checkpointing"
    if mode == "fsdp":
        shard_model(model, model.transformer.h, "cpu")  # float32 everywhere: like with like
    trainable, total = count_params(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    idx = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size + 1), device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    base = torch.cuda.memory_allocated() if device.startswith("cuda") else rss_bytes("VmRSS")
    reset_peak(device)
    for _ in range(2):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        optimizer.step()
        state = training_state(model, optimizer)  # gradients still held
        optimizer.zero_grad(set_to_none=True)
    return trainable, total, state, peak_growth(device, base)


def worker(rank, mode, args, port, results):
    """measure(mode) in a fresh process (a peak RSS starts clean), one of two for fsdp."""
    torch.set_num_threads(1)
    device = f"cuda:{rank}" if args.device == "cuda" else args.device
    if args.device == "cuda":
        torch.cuda.set_device(rank)
    if mode == "fsdp":
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    results[rank] = measure(mode, args, device)
    if mode == "fsdp":
        dist.destroy_process_group()


def predicted(mode, trainable, total, world):
    """Bytes per the arithmetic: fp32 AdamW keeps 4 (weights) + 4 (grads) + 8 (two moments)
    bytes per trained parameter, a frozen one only its 4 weight bytes; FSDP divides it all by the
    number of processes. So a 2B model trained in full needs 32 GB before activations, 4 GB a GPU
    on 8."""
    return (4 * total + 12 * trainable) / (world if mode == "fsdp" else 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n_layer", type=int, default=8)
    parser.add_argument("--n_head", type=int, default=8)
    parser.add_argument("--n_embd", type=int, default=512)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lora_rank", type=int, default=8)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    rows = []
    for mode in args.modes.split(","):
        results = torch.multiprocessing.Manager().dict()
        port = 29500 + os.getpid() % 1000
        torch.multiprocessing.spawn(worker, args=(mode, args, port, results),
                                    nprocs=2 if mode == "fsdp" else 1)
        rows.append((mode, *max(results.values(), key=lambda r: r[3])))  # fsdp: the larger rank
    print(f"model: {args.n_layer} layers, n_embd {args.n_embd}, vocab {args.vocab_size}, batch "
          f"{args.batch_size} x {args.block_size} tokens, float32, on {args.device}")
    print(f"{'mode':<25} {'trainable':>11} {'total':>11} {'state':>10} {'predicted':>10} "
          f"{'peak growth':>12}")
    for mode, trainable, total, state, grown in rows:
        print(f"{mode:<25} {trainable:>11,} {total:>11,} {state / 2**20:>6.1f} MiB "
              f"{predicted(mode, trainable, total, 2) / 2**20:>6.1f} MiB {grown / 2**20:>8.1f} MiB")
    print("state: weights + gradients + AdamW moments held by one process, measured; predicted: "
          "(4 x total + 12 x trainable) bytes,\n/2 for fsdp (per process, of 2); peak growth: "
          + ("torch.cuda.max_memory_allocated" if args.device == "cuda" else "peak RSS")
          + " added by two steps (gradients, moments, activations, allocator slack).")


if __name__ == "__main__":
    main()
