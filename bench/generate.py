"""Greedy KV-cache generation against the machine's memory bandwidth, ours beside transformers.

    python bench/generate.py                          # both models, 1 and 2 threads, idle and busy
    python bench/generate.py --models gpt2 --threads 1 --busy 0 --new_tokens 32 --repeats 2

A decode step reads every weight once, so a model generates at most bandwidth / weight bytes tokens
a second. The bandwidth is measured here as a copy of 1 GiB (bytes read + written per second), then
each model's weight bytes x tokens/s is printed as a share of it. Models: GPT-2 124M (random init:
the speed does not depend on the values) and SmolLM2-135M-Instruct (its cached GGUF, dequantized).
Each runs as ours in float32 and bfloat16 (weights converted, not autocast: half the bytes) and as
transformers in float32 and bfloat16 with the same weights, in one process, taking turns; the best
(minimum) time of each wins. --busy 1 runs a busy-loop process beside them, taking one core: the
case of a shared machine, where a thread that waits for a core holds up all of torch's threads.
"""
import argparse
import contextlib
import copy
import os
import subprocess
import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel
from transformers.utils import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bpe import prompt_ids  # noqa: E402
from model import GPT, GPTConfig, load_pretrained, smollm2_gguf  # noqa: E402

PROMPT = "Write a short story about a robot who learns to paint."


def copy_bandwidth(gib=1.0, repeats=5):
    """Bytes read + written per second by the best of `repeats` copies of a gib-GiB tensor."""
    src = torch.ones(int(gib * 2**30) // 4)  # float32
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch every page first: the copies below move bytes, not page faults
    best = min(timed(lambda: dst.copy_(src))[1] for _ in range(repeats))
    return 2 * src.numel() * 4 / best


def timed(fn):
    """(fn's result, its wall time, this process's CPU time), in seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def weight_bytes(model):
    """Bytes of weights one decode step reads: every parameter (a tied head once), but only one
    row of the position table and, when the head is not tied to it, of the token table."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    if not model.config.rope:
        n -= model.transformer.wpe.weight.nbytes
    if not model.config.tie_embeddings:
        n -= model.transformer.wte.weight.nbytes
    return n


def gpt2_models():
    """(name, ours float32, transformers float32, prompt ids (1, T)): GPT-2 124M, random init."""
    torch.manual_seed(0)
    ours = GPT(GPTConfig(block_size=1024, vocab_size=50257)).eval()
    with tempfile.TemporaryDirectory() as tmp:  # the same weights in both models
        ours.save_pretrained(tmp)
        theirs = GPT2LMHeadModel.from_pretrained(tmp).eval()
    return "GPT-2 124M (random init)", ours, theirs, torch.randint(0, 50257, (1, 16))


def smollm2_models():
    """(name, ours, transformers, a chat prompt): SmolLM2-135M-Instruct's GGUF, as float32."""
    path = smollm2_gguf()
    ours, tok = load_pretrained(str(path))
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                  dtype=torch.float32)
    ids = torch.tensor([prompt_ids(tok, PROMPT, "chat")])
    return "SmolLM2-135M-Instruct (GGUF)", ours.eval(), theirs.eval(), ids


def generators(ours, ours16, theirs, ids, n):
    """{label: a function that generates n tokens greedily after ids}, ours and transformers', in
    float32 and bfloat16."""
    theirs16 = copy.deepcopy(theirs).bfloat16()

    def hf(model):
        return lambda: model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                                      eos_token_id=None)
    return {"ours float32": lambda: ours.generate(ids, n, temperature=0),
            "ours bfloat16": lambda: ours16.generate(ids, n, temperature=0),
            "transformers float32": hf(theirs), "transformers bfloat16": hf(theirs16)}


def products_floor(model, repeats=5):
    """(seconds, count): one decode step's matrix-vector products alone (every linear layer's
    weight, the head included, times a vector), the floor that no trimming of the other
    operations goes below."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    vectors = {m.in_features: torch.randn(m.in_features, dtype=m.weight.dtype) for m in linears}

    def products():
        for m in linears:
            torch.mv(m.weight, vectors[m.in_features])
    with torch.inference_mode():
        products()  # the first call of each shape sets up its kernel
        return min(timed(products)[1] for _ in range(repeats)), len(linears)


def run_turns(fns, repeats):
    """{label: (best wall s, best CPU s, output)} over `repeats` rounds of every fn in turn, after
    a round that warms up (the allocator, each kernel's first call)."""
    times = {label: [] for label in fns}
    outputs = {}
    for r in range(repeats + 1):
        for label, fn in fns.items():
            outputs[label], wall, cpu = timed(fn)
            if r:
                times[label].append((wall, cpu))
    return {label: (min(w for w, _ in t), min(c for _, c in t), outputs[label])
            for label, t in times.items()}


@contextlib.contextmanager
def busy_core(on):
    """A busy-loop process beside this one while inside, when on."""
    loop = f"import os\nwhile os.getppid() == {os.getpid()}: pass"  # ends if this process dies
    proc = subprocess.Popen([sys.executable, "-c", loop]) if on else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def report(name, nbytes, n, threads, busy, bandwidth, results, floor):
    """Print one table: tokens/s by wall and CPU time, weight GB/s and share of the bandwidth; then
    ours bfloat16's products floor and the best ratio it leaves against transformers float32."""
    print(f"\n{name}, {nbytes['ours float32'] / 1e6:,.0f} MB of float32 weights a token, {n} new "
          f"tokens, {threads} thread(s), "
          f"{'a busy-loop process beside it' if busy else 'no load added'}"
          f"; copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + written)")
    base = n / results["transformers float32"][0]
    reference = results["ours float32"][2]
    for label, (wall, cpu, out) in results.items():
        tps = n / wall
        rate = nbytes[label] * tps
        print(f"  {label:22} {tps:6.1f} tok/s (CPU time: {n / cpu:6.1f})  weights {rate / 1e9:5.1f} "
              f"GB/s = {rate / bandwidth:4.0%} of bandwidth  {tps / base:4.2f}x transformers "
              f"float32  same tokens as ours float32: {torch.equal(out, reference)}")
    seconds, count = floor
    print(f"  ours bfloat16's {count} matrix-vector products alone: {seconds * 1e3:.1f} ms a "
          f"token ({nbytes['ours bfloat16'] / seconds / 1e9:.1f} GB/s): at most "
          f"{results['transformers float32'][0] / n / seconds:.2f}x transformers float32 if "
          "nothing else took time")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="gpt2,smollm2", help="gpt2, smollm2 or both")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts to try")
    parser.add_argument("--busy", default="0,1", help="0: nothing added, 1: a busy core beside")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    build = {"gpt2": gpt2_models, "smollm2": smollm2_models}
    for key in args.models.split(","):
        name, ours, theirs, ids = build[key]()
        ours16 = copy.deepcopy(ours).bfloat16()  # the weights converted: half the bytes
        fns = generators(ours, ours16, theirs, ids, args.new_tokens)
        nbytes = {label: weight_bytes(ours) // (2 if "bfloat16" in label else 1) for label in fns}
        for busy in map(int, args.busy.split(",")):
            with busy_core(busy):
                for threads in map(int, args.threads.split(",")):
                    torch.set_num_threads(threads)
                    bandwidth = copy_bandwidth()
                    results = run_turns(fns, args.repeats)
                    floor = products_floor(ours16)
                    report(name, nbytes, args.new_tokens, threads, busy, bandwidth, results, floor)


if __name__ == "__main__":
    main()
