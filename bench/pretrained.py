"""Our model.py against transformers on a real pretrained model: SmolLM2-135M-Instruct (Q4_1 GGUF).

    python bench/pretrained.py                  # 128-token greedy generation, GGUF load; 3 rounds
    python bench/pretrained.py --threads 1 --repeats 5 --new_tokens 256

Both load the same GGUF file (dequantized to float32) and continue the same ChatML prompt (built by
transformers' tokenizer) greedily, in this process, taking turns; the best (minimum) time of each
wins: on a shared machine, the run least disturbed by others. Prints tokens/s and the ratio ours /
theirs, and each loader's time. Targets (issue 9): generation >= 1.5x transformers, goal 2x.
"""
import argparse
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import GPT, smollm2_gguf  # noqa: E402

PROMPT = "Write a short story about a robot who learns to paint."


def timed(fn):
    """(fn's result, its wall time, the CPU time of this process's threads), in seconds. On a busy
    machine the CPU time leaves out the time spent waiting for a core (clearest with --threads 1).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    path = smollm2_gguf()
    ours, ours_load, _ = timed(lambda: GPT.from_pretrained(str(path)).eval())
    theirs, their_load, _ = timed(lambda: AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32).eval())
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                  return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    n = args.new_tokens

    def ours_generate():
        return ours.generate(ids, n, temperature=0)

    def their_generate():
        with torch.inference_mode():
            return theirs.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                   attention_mask=torch.ones_like(ids),
                                   pad_token_id=tok.eos_token_id)

    times = {ours_generate: [], their_generate: []}  # (wall, cpu) of each round
    outputs = {}
    for _ in range(args.repeats + 1):  # the first round warms up (allocator, kernels): not counted
        for fn in times:
            outputs[fn], wall, cpu = timed(fn)
            times[fn].append((wall, cpu))
    same = torch.equal(outputs[ours_generate], outputs[their_generate])
    print(f"SmolLM2-135M-Instruct Q4_1 GGUF as float32, prompt {ids.shape[1]} tokens, {n} new, "
          f"greedy, {torch.get_num_threads()} threads, best of {args.repeats}; same tokens: {same}")
    for i, clock in enumerate(("wall", "cpu")):
        ours_tps = n / min(t[i] for t in times[ours_generate][1:])
        their_tps = n / min(t[i] for t in times[their_generate][1:])
        print(f"generation ({clock:4} time)  ours {ours_tps:6.1f} tok/s   transformers "
              f"{their_tps:6.1f} tok/s   ratio {ours_tps / their_tps:.2f}x")
    print(f"GGUF load (wall time)        ours {ours_load:6.2f} s       transformers "
          f"{their_load:6.2f} s       ratio {their_load / ours_load:.2f}x")
    print("text:", repr(tok.decode(outputs[ours_generate][0, ids.shape[1]:])[:200]))


if __name__ == "__main__":
    main()
