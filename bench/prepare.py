"""Time and peak memory of data/tinystories/prepare.py on a ~1 GB text (a benchmark, not a test),
and bpe.encode_file's speed beside tiktoken's on the same text.

    python bench/prepare.py --num_proc 1
    python bench/prepare.py --num_proc 2 --mb 1024

The input is made once in /tmp (never committed) from ../shared/data/tinyshakespeare.txt: copies
of it, each with its paragraphs shuffled and numbered ("12-345"), grouped 5 to a story and the
stories separated by <|endoftext|> as in TinyStories. prepare.py runs in a subprocess (BPE training,
then encoding into shards), and the memory of its whole process tree (the main process and its
num_proc workers) is sampled every 0.1 s: the peak of the sum of their RSS is reported, with the
peak RSS of the main process (VmHWM). Then, in this process, on the first --peer_mb MB of the input:
tiktoken's GPT-2 (encode_ordinary_batch on num_proc threads) and bpe.encode_file with GPT-2 on
num_proc processes, the ratio of their times.
"""
import argparse
import os
import random
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import bpe  # noqa: E402

SOURCE = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")
EOT = "<|endoftext|>"


def make_corpus(path, mb):
    """Write ~mb MB of perturbed tinyshakespeare stories to path, unless it is there already."""
    if os.path.isfile(path) and os.path.getsize(path) >= mb << 20:
        return
    paragraphs = open(SOURCE, encoding="utf-8").read().split("\n\n")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        copy = 0
        while f.tell() < mb << 20:
            rng = random.Random(copy)
            order = rng.sample(range(len(paragraphs)), len(paragraphs))
            for k in range(0, len(order), 5):
                story = "\n\n".join(f"{copy}-{j} {paragraphs[j]}" for j in order[k:k + 5])
                f.write(story + "\n" + EOT + "\n")
            copy += 1
    os.replace(path + ".tmp", path)


def tree_rss(root_pid):
    """{pid: (VmRSS, VmHWM) in bytes} of root_pid and all its descendants (Linux /proc)."""
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            pass
    tree, grew = {root_pid}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    out = {}
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f)
            out[pid] = tuple(int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))
        except (OSError, KeyError):
            pass
    return out


def run_measured(cmd):
    """(seconds, peak summed RSS of the process tree, peak RSS of the main process) of cmd."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    peak_sum = peak_main = 0
    while proc.poll() is None:
        rss = tree_rss(proc.pid)
        peak_sum = max(peak_sum, sum(r for r, _ in rss.values()))
        peak_main = max(peak_main, rss.get(proc.pid, (0, 0))[1])
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} exited with {proc.returncode}")
    return time.time() - t0, peak_sum, peak_main


def peer(path, mb, num_proc):
    """(tiktoken seconds, encode_file seconds) for GPT-2 ids of the first mb MB of path."""
    import tiktoken
    import tiktoken.load
    head = path + f".head{mb}"
    with open(path, "rb") as f, open(head, "wb") as g:
        g.write(f.read(mb << 20).rsplit(b"\n", 1)[0] + b"\n")
    text = open(head, encoding="utf-8").read()
    enc = tiktoken.Encoding("gpt2", pat_str=bpe.GPT2_SPLIT_PATTERN, special_tokens={EOT: 50256},
                            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(bpe.gpt2_ranks_path())))
    docs = text.split(EOT)
    t0 = time.time()
    theirs = enc.encode_ordinary_batch(docs, num_threads=num_proc)
    t_peer = time.time() - t0
    tok = bpe.gpt2_tokenizer()
    t0 = time.time()
    ours = np.concatenate(list(bpe.encode_file(tok, head, {EOT}, num_proc)))  # uint32 arrays
    t_ours = time.time() - t0
    want = [i for ids in theirs for i in ids + [50256]][:-1]
    assert np.array_equal(ours, want), "encode_file's ids differ from tiktoken's"
    os.remove(head)
    return t_peer, t_ours


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_proc", type=int, default=1)
    parser.add_argument("--mb", type=int, default=1024, help="size of the input text")
    parser.add_argument("--peer_mb", type=int, default=32, help="text for the tiktoken comparison")
    parser.add_argument("--input", default="/tmp/scratchgpt_corpus.txt")
    parser.add_argument("--out_dir", default="/tmp/scratchgpt_prepared")
    args = parser.parse_args()
    make_corpus(args.input, args.mb)
    size = os.path.getsize(args.input)
    cmd = [sys.executable, os.path.join(ROOT, "data", "tinystories", "prepare.py"), "--input",
           args.input, "--out_dir", args.out_dir, "--num_proc", str(args.num_proc)]
    print("$ " + " ".join(cmd))
    seconds, peak_sum, peak_main = run_measured(cmd)
    print(f"{size / 1e9:.2f} GB in {seconds:.0f} s ({size / 1e6 / seconds:.1f} MB/s), num_proc "
          f"{args.num_proc}: peak RSS {peak_sum / 2**20:.0f} MiB (all processes), "
          f"{peak_main / 2**20:.0f} MiB (main process)")
    t_peer, t_ours = peer(args.input, args.peer_mb, args.num_proc)
    print(f"GPT-2 ids of the first {args.peer_mb} MB, {args.num_proc} thread(s)/process(es): "
          f"tiktoken {t_peer:.1f} s, bpe.encode_file {t_ours:.1f} s "
          f"(ours / tiktoken = {t_ours / t_peer:.2f})")


if __name__ == "__main__":
    main()
