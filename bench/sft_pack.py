"""sft.py's packing, old against new, in one process: pack() vs first_fit(), and packed attention
(model.Documents) vs padding (is_causal) and the old dense (B, T, T) mask.

    python bench/sft_pack.py                          # all of it, torch's threads
    python bench/sft_pack.py --parts pack             # parts: pack, shape, epoch
    python bench/sft_pack.py --threads 1 --seq_lens 1024,2048

pack: the 137 demo pairs (data/sft/train.txt, GPT-2 tokens) x1000, shuffled, into rows of
--block_size: first_fit (readable, O(examples x rows)) and pack (tournament tree), same rows.
shape: fwd+bwd on the same (B, T) tokens: padding's plain causal attention, the old dense mask,
Documents. epoch: the same examples as sft.py trains them: padded batches (B examples, each batch
padded to its longest) vs B packed rows per step, real tokens/s.
Example lengths: log-normal, median --median_len tokens, sigma 0.9 (a long right tail, as in chat
SFT sets), clipped to [8, T]. Best (minimum) of --repeats rounds, the variants in turns.
Targets (issue 17): pack >= 10x faster with the same rows; Documents <= padding at T = 1024, 2048.
"""
import argparse
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bpe  # noqa: E402
import sft  # noqa: E402
from files import read_qa_file  # noqa: E402
from model import GPT, Documents, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def best_times(fns, repeats):
    """{name: best wall time}: in each round every function runs twice in a row, the second timed
    (the first re-warms the allocator after the others), in turns so all see the same load."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def bench_pack(args):
    """first_fit vs pack on 137k demo examples (input tokens per example, in random order)."""
    tok = bpe.load_tokenizer("gpt2")
    pairs, _ = read_qa_file(os.path.join(ROOT, "data/sft/train.txt"))
    lengths = [len(p) + len(c) - 1 for p, c in sft.encode_pairs(tok, pairs)] * 1000
    random.Random(0).shuffle(lengths)
    t0 = time.perf_counter()
    new = sft.pack(lengths, args.block_size)
    t_new = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = sft.first_fit(lengths, args.block_size)
    t_old = time.perf_counter() - t0
    print(f"pack {len(lengths):,} examples (mean {sum(lengths) / len(lengths):.0f} tokens) into "
          f"{len(new):,} rows of {args.block_size}: first_fit {t_old:.2f} s, pack {t_new:.3f} s, "
          f"{t_old / t_new:.0f}x faster; same rows: {new == old}")


def sample_lengths(n, T, median, g):
    """n example lengths: log-normal around median, clipped to [8, T]."""
    raw = torch.empty(n).log_normal_(float(torch.tensor(median).log()), 0.9, generator=g)
    return raw.round().long().clamp(8, T).tolist()


def fill_ms():
    """Median ms of a 1 MB fill: about 0.02 on free cores; with more threads than free cores each
    parallel op waits for a thread to be scheduled, a tick (~8 ms here), which this shows."""
    a = torch.empty(256 * 1024)
    times = []
    for _ in range(51):
        t0 = time.perf_counter()
        a.fill_(1.0)
        times.append(time.perf_counter() - t0)
    return sorted(times)[25] * 1e3


def fwd_bwd(model, x, y, **kw):
    """One forward and backward: what a training step spends in the model."""
    model.zero_grad(set_to_none=True)
    model(x, y, **kw)[1].backward()


def rows_of(lengths, T, B):
    """The first B packed rows (each a list of example lengths) of lengths, packed into T."""
    return [[lengths[i] for i in row] for row in sft.pack(lengths, T)[:B]]


def bench_shape(model, T, B, args, g):
    """fwd+bwd on the same B x T tokens: plain causal (padding's), dense mask (old), Documents."""
    docs = Documents(rows_of(sample_lengths(40 * B, T, args.median_len, g), T, B), T)
    x = torch.randint(0, args.vocab_size, (B, T))
    mask = docs.mask()
    t = best_times({
        "padding": lambda: fwd_bwd(model, x, x),
        "dense mask": lambda: fwd_bwd(model, x, x, attn_mask=mask, positions=docs.positions),
        "documents": lambda: fwd_bwd(model, x, x, attn_mask=docs, positions=docs.positions),
    }, args.repeats)
    print(f"T={T} B={B}, same tokens ({len(docs.spans)} documents"
          f", groups {docs.shapes}): padding {t['padding'] * 1e3:.0f} ms, "
          f"dense mask {t['dense mask'] * 1e3:.0f} ms ({t['dense mask'] / t['padding']:.2f}x), "
          f"documents {t['documents'] * 1e3:.0f} ms ({t['documents'] / t['padding']:.2f}x; "
          f"target <= 1.00x); a 1 MB fill {fill_ms():.3f} ms")


def bench_epoch(model, T, B, args, g):
    """The examples of B packed rows, trained as sft.py does: padded batches vs packed rows."""
    lengths = sample_lengths(40 * B, T, args.median_len, g)
    rows = rows_of(lengths, T, B)
    chosen = [n for row in rows for n in row]
    docs = Documents(rows, T)
    x = torch.randint(0, args.vocab_size, (B, T))
    padded = [torch.randint(0, args.vocab_size, (len(chunk), max(chunk)))
              for chunk in (chosen[i : i + B] for i in range(0, len(chosen), B))]
    t = best_times({
        "padding": lambda: [fwd_bwd(model, p, p) for p in padded],
        "documents": lambda: fwd_bwd(model, x, x, attn_mask=docs, positions=docs.positions),
    }, args.repeats)
    n = sum(chosen)
    print(f"T={T}, {len(chosen)} examples, {n} tokens: padding {len(padded)} steps "
          f"{n / t['padding']:.0f} tokens/s, packed 1 step of {B} rows {n / t['documents']:.0f} "
          f"tokens/s ({t['padding'] / t['documents']:.2f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="pack,shape,epoch")
    parser.add_argument("--block_size", type=int, default=1024, help="pack part: row length")
    parser.add_argument("--seq_lens", default="1024,2048")
    parser.add_argument("--batch_size", type=int, default=4, help="rows per step at T=1024; "
                        "halved at each doubling of T (the same tokens per step)")
    parser.add_argument("--median_len", type=int, default=200)
    parser.add_argument("--n_layer", type=int, default=4)
    parser.add_argument("--n_head", type=int, default=4)
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--vocab_size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    if "pack" in parts:
        bench_pack(args)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    model = GPT(GPTConfig(block_size=max(seq_lens), vocab_size=args.vocab_size,
                          n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd))
    print(f"torch threads {torch.get_num_threads()}, {args.n_layer} layers, n_embd {args.n_embd}, "
          f"lengths log-normal median {args.median_len}; a 1 MB fill {fill_ms():.3f} ms")
    for T in seq_lens:
        B = max(1, args.batch_size * 1024 // T)
        if "shape" in parts:
            bench_shape(model, T, B, args, g)
        if "epoch" in parts:
            bench_epoch(model, T, B, args, g)


if __name__ == "__main__":
    main()
