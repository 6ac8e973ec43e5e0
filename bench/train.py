"""One training step (forward, backward, AdamW) of our GPT vs transformers' GPT2LMHeadModel + torch.optim.AdamW.

Same config, same batch, same process, steps interleaved so that machine noise hits both alike; prints the
median step times and the ratio (target: ours >= 1.2x faster on CPU).

    python bench/train.py                                  # a 6-layer, 384-dim GPT, batch 8 x 256, float32
    python bench/train.py --n_layer 4 --n_embd 128 --block_size 64 --batch_size 12 --threads 1
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import GPT, GPTConfig  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_layer", type=int, default=6)
    parser.add_argument("--n_head", type=int, default=6)
    parser.add_argument("--n_embd", type=int, default=384)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--vocab_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel  # the peer: bench-only dependency
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = GPT(GPTConfig(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer,
                         n_head=args.n_head, n_embd=args.n_embd, dropout=0.0, bias=True))
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab_size, n_positions=args.block_size, n_embd=args.n_embd,
                                    n_layer=args.n_layer, n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                                    attn_pdrop=0.0, bos_token_id=None, eos_token_id=None))
    hf.train()
    ours_opt = ours.configure_optimizers(0.1, 6e-4, (0.9, 0.95), "cpu")
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size + 1))
    inputs, targets = x[:, :-1], x[:, 1:]

    def ours_step():
        _, loss = ours(inputs, targets)
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad(set_to_none=True)

    def hf_step():  # labels = inputs: GPT2LMHeadModel shifts them itself, the same next-token loss
        hf(input_ids=inputs, labels=inputs).loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)

    times = {"ours": [], "transformers": []}
    for i in range(args.steps + 2):  # 2 warm-up steps each
        for name, step in (("ours", ours_step), ("transformers", hf_step)):
            t0 = time.perf_counter()
            step()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"config: n_layer={args.n_layer} n_head={args.n_head} n_embd={args.n_embd} block_size={args.block_size} "
          f"batch_size={args.batch_size} vocab={args.vocab_size} ({n_params / 1e6:.2f}M params), float32, "
          f"{args.threads} thread(s), median of {args.steps} steps")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"{name:>13}: {t * 1000:8.1f} ms/step (min {min(times[name]) * 1000:.1f})")
    print(f"ratio transformers / ours: {med['transformers'] / med['ours']:.2f}x")


if __name__ == "__main__":
    main()
