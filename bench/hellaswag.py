"""Peak memory of HellaSwag scoring at batch size 64 (a benchmark, not a test).

    python bench/hellaswag.py                 # the fixture's 7 examples repeated to 64, one batch
    python bench/hellaswag.py --data data/hellaswag/hellaswag_val.jsonl --n_embd 384

A random 2-layer model with GPT-2's vocabulary and tokenizer scores the examples with
hellaswag.evaluate in a child process; the child's peak RSS (getrusage ru_maxrss: torch's memory
too, which tracemalloc does not see) is printed beside that of a child that only builds the model
and reads the data, and their difference: the memory scoring takes. Run it on an older commit's
checkout to compare (hellaswag.py once computed the logits of every position of every row).
"""
import argparse
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hellaswag  # noqa: E402
from bpe import tokenizer_from_spec  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                       "fixtures", "hellaswag_val_sample.jsonl")


def child(args):
    """Build the model, read the data, and score it unless --setup_only; print the result."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=1024, vocab_size=50257, n_layer=2, n_head=args.n_embd // 64,
                          n_embd=args.n_embd))
    examples = hellaswag.load_examples(args.data)
    examples = (examples * (args.examples // len(examples) + 1))[:args.examples]
    encode = tokenizer_from_spec({"kind": "gpt2"}).encode_ordinary
    if not args.setup_only:
        t0 = time.perf_counter()
        result = hellaswag.evaluate(model, encode, examples, "cpu", batch_size=args.batch_size)
        print(f"{result}, {time.perf_counter() - t0:.1f} s")


def peak_rss(argv):
    """Peak RSS in bytes of a child process running this script with argv, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, __file__, "--child", *argv], check=True,
                         capture_output=True, text=True).stdout.strip()
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far, KiB
    if after <= before:
        raise RuntimeError("a child's peak is hidden by a larger earlier one: run it first")
    return after * 1024, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=FIXTURE)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--n_embd", type=int, default=768)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    argv = [f"--data={args.data}", f"--examples={args.examples}",
            f"--batch_size={args.batch_size}", f"--n_embd={args.n_embd}"]
    setup, _ = peak_rss(argv + ["--setup_only"])  # the smaller child first (maxrss only grows)
    scored, out = peak_rss(argv)
    print(f"{args.examples} examples, batch_size {args.batch_size}, 2 layers, n_embd "
          f"{args.n_embd}, vocab 50257: {out}")
    print(f"peak RSS: model and data {setup / 2**20:,.0f} MiB, scoring {scored / 2**20:,.0f} MiB, "
          f"difference {(scored - setup) / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
