"""Benchmarks for bpe.py, each against its peer in the same process on the same input (not pytest):

1. training, vocab 10,000, on 1 MB and 5 MB of text: our time / Hugging Face tokenizers' time
   (target <= 1.0);
2. encoding with GPT-2: our throughput / tiktoken's, ids asserted identical (target >= 0.4);
3. training on a >= 1 GB file with `python bpe.py train`: peak RSS of the process tree
   (target < 2 GB) and time.

    python bench/bpe.py --threads 1                # HF and tiktoken on 1 thread, ours 1 process
    python bench/bpe.py --threads 2 --parts train  # parts: train, varied, encode, 1gb
    python bench/bpe.py --threads 2 --parts varied --varied_mb 10,50 --repeat 2

The 5 MB and 1 GB inputs repeat the 1 MB text (copies separated by <|endoftext|>): the distinct
words, and so the merge work, stay those of 1 MB; what grows is the pre-tokenization. "varied"
trains on 10-100 MB whose vocabulary keeps growing, as a real corpus's does: copies of the text,
each with other made-up words put in (`varied` below, which bench/encode.py uses too).
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EOT = "<|endoftext|>"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SCRIPTS = ["абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμνξοπρστυφχψω", "éèêàâçôûîïüöäßñ",
           "的一是不了人我在有他这为之大来以个中上们", "あいうえおかきくけこさしすせそ", "가나다라마바사아자차카"]


def varied(text: str, seed: int, share: float = 0.15, non_ascii: float = 0.1) -> str:
    """text with a made-up word after `share` of its words: a random word of letters (a third
    capitalized), a number, or (`non_ascii` of them) a word of another script."""
    rng = random.Random(seed)
    out = []
    for word in text.split(" "):
        out.append(word)
        if rng.random() < share:
            r = rng.random()
            if r < non_ascii:
                script = rng.choice(SCRIPTS)
                out.append("".join(rng.choice(script) for _ in range(rng.randint(2, 8))))
            elif r < non_ascii + 0.25:
                out.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
            else:
                w = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 10)))
                out.append(w.capitalize() if rng.random() < 0.3 else w)
    return " ".join(out)


def race(fns, repeat):
    """Per function (min wall seconds, min CPU seconds of this process, last result), the functions
    run in turns, `repeat` rounds, so that a change in the machine's load hits all of them."""
    wall, cpu, out = [[] for _ in fns], [[] for _ in fns], [None] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            out[k] = fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return [(min(w), min(c), o) for w, c, o in zip(wall, cpu, out)]


def bench_train(text: str, label: str, threads: int, tmp: Path, repeat: int) -> None:
    import bpe
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, trainers

    path = tmp / "train.txt"
    path.write_text(text, encoding="utf-8")

    def hf():
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(vocab_size=10_000, special_tokens=[EOT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train([str(path)], trainer)
        return tok

    ours = lambda: bpe.train_bpe(path, 10_000, [EOT], num_proc=threads)
    (t_hf, c_hf, hf_tok), (t_ours, c_ours, tok) = race([hf, ours], repeat)
    # CPU time counts HF's threads but not our worker processes: comparable with 1 thread only
    cpu = f", CPU time ratio {c_ours / c_hf:.2f}" if threads == 1 else ""
    print(f"train {label} ({len(text.encode()) / 1e6:.1f} MB, vocab 10,000, {threads} thread(s)): "
          f"ours {t_ours:.2f}s  HF {t_hf:.2f}s  ratio ours/HF {t_ours / t_hf:.2f}{cpu}  "
          f"(target <= 1.0; vocab ours {len(tok.vocab)}, HF {hf_tok.get_vocab_size()})")


def bench_encode(text: str, label: str, repeat: int) -> None:
    import tiktoken
    import bpe

    ours = bpe.gpt2_tokenizer()
    ranks = {v: i for i, v in ours.vocab.items() if i != 50256}
    enc = tiktoken.Encoding(name="gpt2", pat_str=bpe.GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                            special_tokens={EOT: 50256})
    mb = len(text.encode()) / 1e6
    # an empty pre-token cache (both generations)
    cold = lambda: (ours._cache.clear(), ours._old_cache.clear(), ours.encode_ordinary(text))[2]
    warm = lambda: ours.encode_ordinary(text)
    (t_tt, c_tt, ids_tt), (t_cold, c_cold, ids), (t_warm, c_warm, ids2) = race(
        [lambda: enc.encode_ordinary(text), cold, warm], repeat)
    assert ids == ids_tt and ids2 == ids_tt, "ids differ from tiktoken's"
    print(f"encode GPT-2 ({mb:.1f} MB {label}, {len(ids):,} tokens, ids identical, 1 thread): "
          f"tiktoken {mb / t_tt:.2f} MB/s; ours with a cold pre-token cache {mb / t_cold:.2f} MB/s "
          f"(ratio {t_tt / t_cold:.2f}, CPU time ratio {c_tt / c_cold:.2f}), warm "
          f"{mb / t_warm:.2f} MB/s (ratio {t_tt / t_warm:.2f}, CPU time ratio "
          f"{c_tt / c_warm:.2f})  (target >= 0.4)")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue  # the process ended while we looked
    tree, total = {pid}, 0
    changed = True
    while changed:
        kids = {p for p, pp in parent.items() if pp in tree} - tree
        changed = bool(kids)
        tree |= kids
    for p in tree:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def bench_1gb(text: str, threads: int, path: Path) -> None:
    copies = -(-(1 << 30) // len((text + EOT).encode()))
    if not path.is_file() or path.stat().st_size < 1 << 30:
        with open(path, "w", encoding="utf-8") as f:
            for _ in range(copies):
                f.write(text + EOT)
    size = path.stat().st_size
    out = Path(tempfile.mkdtemp(prefix="bpe_1gb_tok_"))
    cmd = [sys.executable, str(ROOT / "bpe.py"), "train", "--input", str(path),
           "--vocab_size", "10000", "--special", EOT, "--out", str(out), "--num_proc", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    dt = time.perf_counter() - t0
    assert proc.returncode == 0, f"bpe.py train failed with {proc.returncode}"
    print(f"train on {size / 2**30:.2f} GiB file ({threads} process(es)): {dt:.0f}s "
          f"({size / 1e6 / dt:.1f} MB/s), peak RSS of the process tree {peak / 2**20:.0f} MiB "
          f"(target < 2048 MiB); {proc.stdout.read().strip()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for HF/tiktoken, processes for us")
    parser.add_argument("--data", default="/work/shared/data/tinyshakespeare.txt",
                        help="~1 MB of real text")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default="train,encode,1gb",
                        help="comma-separated: train, varied, encode, 1gb")
    parser.add_argument("--varied_mb", default="10,50", help="sizes of the varied training texts")
    parser.add_argument("--big_file", default="/tmp/bpe_bench_1gb.txt")
    args = parser.parse_args()
    # the Rust thread pools read these when first used: set them before importing tokenizers and
    # tiktoken
    os.environ["RAYON_NUM_THREADS"] = os.environ["RAYON_RS_NUM_CPUS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"
    text = Path(args.data).read_text(encoding="utf-8")
    # tinyshakespeare is pure ASCII, which bpe.py splits with a faster splitter; with typographic
    # apostrophes 5,000 of its 40,000 lines are not, and the whole text goes through the general
    # Unicode regex
    curly = text.replace("'", "\u2019")
    parts = args.parts.split(",")
    if "train" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            bench_train(text, "1MB", args.threads, Path(tmp), args.repeat)
            bench_train(EOT.join([text] * 5), "5MB", args.threads, Path(tmp), args.repeat)
            bench_train(curly, "1MB, not ASCII", args.threads, Path(tmp), args.repeat)
            bench_train(EOT.join([curly] * 5), "5MB, not ASCII", args.threads, Path(tmp),
                        args.repeat)
    if "varied" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            copy_bytes = len(varied(text, 0).encode())  # each seed's copy is about as long
            for mb in map(int, args.varied_mb.split(",")):
                copies = -(-mb * 10**6 // copy_bytes)  # rounded up
                big = EOT.join(varied(text, seed) for seed in range(copies))
                bench_train(big, f"{mb}MB varied", args.threads, Path(tmp), args.repeat)
    if "encode" in parts:
        bench_encode(text, "ASCII", args.repeat)
        bench_encode(curly, "not ASCII", args.repeat)
    if "1gb" in parts:
        bench_1gb(text, args.threads, Path(args.big_file))


if __name__ == "__main__":
    main()
