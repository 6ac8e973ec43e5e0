"""Encoding speed of bpe.py's GPT-2 tokenizer against tiktoken, in the same process on the same
input (not pytest). Every row asserts that the ids are identical and prints ours / tiktoken's
throughput (target >= 0.5 for the cold rows):

1. building: gpt2_tokenizer() from the cached rank table (target <= 0.2 s), and the tables the
   first encode builds;
2. cold encode (an empty pre-token cache: every word new) of "varied" text, tinyshakespeare with
   random words, numbers and non-ASCII words put in, so the vocabulary keeps growing as a real
   corpus's does; plain tinyshakespeare; a variant with curly quotes and more non-ASCII words;
3. one long pre-token (a run of letters, digits, '=' or mixed Unicode): target < 0.1 s for 100k;
4. encode_iterable over a file of varied text against tiktoken on the same chunks: throughput (in
   turns, in this process) and how far each one's peak resident memory rises over the stream
   (each in a fresh process);
5. bpe.encode_file on that file in 1 and 2 processes against tiktoken in one thread (target >= 1
   with two processes).

    python bench/encode.py                        # 1 thread for tiktoken, ours is 1 process
    python bench/encode.py --stream_mb 100 --parts stream,parallel
"""
import argparse
import hashlib
import os
import random
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = os.environ["RAYON_RS_NUM_CPUS"] = "1"  # before tiktoken loads
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import tiktoken  # noqa: E402

import bpe  # noqa: E402
from bench.bpe import LETTERS, race, varied  # noqa: E402


def peer(tok: bpe.Tokenizer) -> tiktoken.Encoding:
    ranks = {v: i for i, v in tok.vocab.items() if i != 50256}
    return tiktoken.Encoding(name="gpt2", pat_str=bpe.GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={bpe.GPT2_EOT: 50256})


def forget(tok: bpe.Tokenizer) -> None:
    """Empty caches: the next encode meets every word (and every pair of tokens it glues) for
    the first time."""
    tok._cache.clear()
    tok._old_cache.clear()
    tok._remerged.clear()


def bench_build() -> None:
    bpe.gpt2_tokenizer()  # the merges file is written on the very first call
    [(wall, cpu, tok)] = race([bpe.gpt2_tokenizer.__wrapped__], 5)
    t0, c0 = time.perf_counter(), time.process_time()
    tok._rank, tok._merged, tok._tables  # what the first encode that runs BPE builds
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"build gpt2_tokenizer(): {wall:.3f} s, CPU time {cpu:.3f} s (best of 5; target <= 0.2 s)"
          f"; the first encode that runs BPE builds the merge tables in {first:.3f} s more (CPU "
          f"{first_cpu:.3f} s)")


def bench_cold(tok, enc, text: str, label: str, repeat: int) -> None:
    mb = len(text.encode()) / 1e6
    cold = lambda: (forget(tok), tok.encode_ordinary(text))[1]
    (t_tt, c_tt, ids_tt), (t_ours, c_ours, ids) = race(
        [lambda: enc.encode_ordinary(text), cold], repeat)
    assert ids == ids_tt, f"{label}: ids differ from tiktoken's"
    print(f"cold encode {label} ({mb:.2f} MB, {len(ids):,} tokens, ids identical): tiktoken "
          f"{mb / t_tt:.2f} MB/s, ours {mb / t_ours:.2f} MB/s, ratio {t_tt / t_ours:.2f} "
          f"(CPU time ratio {c_tt / c_ours:.2f}; target >= 0.5)")


def bench_long(tok, enc) -> None:
    rng = random.Random(0)
    runs = {"letters": lambda n: "".join(rng.choice(LETTERS) for _ in range(n)),
            "digits": lambda n: "".join(rng.choice("0123456789") for _ in range(n)),
            "'='": lambda n: "=" * n,
            "Unicode letters": lambda n: "".join(rng.choice("éaß한字я") for _ in range(n))}
    for n in (10_000, 100_000):
        row = []
        for name, make in runs.items():
            text = make(n)
            assert bpe.pretokenize(text) == [text]
            [(t_tt, _, ids_tt), (t_ours, c_ours, ids)] = race(
                [lambda: enc.encode_ordinary(text), lambda: (forget(tok), tok.encode(text))[1]], 2)
            assert ids == ids_tt, f"{name}: ids differ from tiktoken's"
            row.append(f"{name} {t_ours:.3f} s, CPU {c_ours:.3f} s (tiktoken {t_tt * 1e3:.1f} ms)")
        print(f"one pre-token of {n:,} characters, ids identical: " + "; ".join(row)
              + (" (target < 0.1 s)" if n == 100_000 else ""))


def stream_file(text: str, mb: int) -> Path:
    path = Path(f"/tmp/bench_encode_varied_{mb}mb.txt")
    if not path.is_file():
        with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as f:
            size, seed = 0, 1
            while size < mb * 1e6:
                part = varied(text, seed)
                f.write(part)
                size, seed = size + len(part.encode()), seed + 1
        path.with_suffix(".tmp").rename(path)
    return path


def tiktoken_chunks(path: Path, chunk_chars: int = 1 << 20):
    """The file in ~1 MB pieces of whole lines, each cut where a line ends in a visible character
    and the next starts with one: tiktoken splits there anyway, so the ids are the whole file's."""
    buf = []
    size = 0
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            if size >= chunk_chars and buf[-1][-2:-1].strip() and line[:1].strip():
                yield "".join(buf)
                buf, size = [], 0
            buf.append(line)
            size += len(line)
    yield "".join(buf)


def stream_once(name: str, tok, enc, path: Path) -> tuple[float, str, int]:
    """(seconds, sha256 of the ids, how many) of one tokenizer over the file, read as a stream."""
    forget(tok)
    digest, n = hashlib.sha256(), 0
    t0 = time.perf_counter()
    if name == "ours":
        with open(path, encoding="utf-8", newline="") as f:
            ids = tok.encode_iterable(f)
            while block := list(islice(ids, 1 << 16)):
                digest.update(np.array(block, np.int32).tobytes())
                n += len(block)
    else:
        for chunk in tiktoken_chunks(path):
            block = enc.encode_ordinary(chunk)
            digest.update(np.array(block, np.int32).tobytes())
            n += len(block)
    return time.perf_counter() - t0, digest.hexdigest(), n


def peak_rss_mib() -> float:
    """This process's peak resident memory since the last reset_peak_rss() (Linux: VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak becomes the current resident memory


def memory_child(name: str, path: Path) -> None:
    """Run in a fresh process: print how far its peak resident memory rose over the stream above
    where it was before (the tokenizer built)."""
    tok = bpe.gpt2_tokenizer()
    enc = peer(tok)
    tok._tables
    reset_peak_rss()
    start = peak_rss_mib()
    stream_once(name, tok, enc, path)
    print(peak_rss_mib() - start)


def bench_stream(tok, enc, text: str, mb: int) -> None:
    path = stream_file(text, mb)
    size = path.stat().st_size / 1e6
    (t_tt, h_tt, n_tt), (t_ours, h_ours, n_ours) = [stream_once(name, tok, enc, path)
                                                    for name in ("tiktoken", "ours")]
    assert (h_tt, n_tt) == (h_ours, n_ours), "encode_iterable's ids differ from tiktoken's"
    # memory: each in a fresh process of its own, so that neither inherits the other's heap
    grew = {name: float(subprocess.run([sys.executable, __file__, "--memory_child", name,
                                        str(path)], capture_output=True, text=True,
                                       check=True).stdout)
            for name in ("tiktoken", "ours")}
    print(f"encode_iterable over {size:.0f} MB of varied text ({n_ours:,} tokens, ids identical): "
          f"tiktoken {size / t_tt:.2f} MB/s, peak memory +{grew['tiktoken']:.0f} MiB; ours "
          f"{size / t_ours:.2f} MB/s, peak memory +{grew['ours']:.0f} MiB; ratio "
          f"{t_tt / t_ours:.2f} (target >= 0.5, flat memory)")


def bench_parallel(tok, enc, text: str, mb: int) -> None:
    path = stream_file(text, mb)
    size = path.stat().st_size / 1e6
    # the ids as uint32 arrays, as data preparation writes them
    t0 = time.perf_counter()
    want = np.concatenate([enc.encode_to_numpy(chunk) for chunk in tiktoken_chunks(path)])
    t_tt = time.perf_counter() - t0
    row = []
    for num_proc in (1, 2):
        forget(tok)  # (the workers start with the parent's caches, emptied)
        t0 = time.perf_counter()
        ids = np.concatenate(list(bpe.encode_file(tok, path, "none", num_proc)))
        t_ours = time.perf_counter() - t0
        assert np.array_equal(ids, want), f"encode_file's ids differ from tiktoken's ({num_proc})"
        row.append(f"{num_proc} process(es) {size / t_ours:.2f} MB/s, ratio {t_tt / t_ours:.2f}")
    print(f"encode_file over {size:.0f} MB of varied text (ids identical): tiktoken 1 thread "
          f"{size / t_tt:.2f} MB/s; ours " + "; ".join(row) + " (target >= 1 with 2 processes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/tinyshakespeare.txt"),
                        help="~1 MB of real text")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", default="build,cold,long,stream,parallel",
                        help="comma-separated: build, cold, long, stream, parallel")
    parser.add_argument("--stream_mb", type=int, default=20, help="size of the streamed file")
    parser.add_argument("--memory_child", nargs=2, help=argparse.SUPPRESS)  # NAME PATH
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child[0], Path(args.memory_child[1]))
    text = Path(args.data).read_text(encoding="utf-8")
    parts = args.parts.split(",")
    if "build" in parts:
        bench_build()
    tok = bpe.gpt2_tokenizer()
    enc = peer(tok)
    if "cold" in parts:
        bench_cold(tok, enc, varied(text, 0), "varied", args.repeat)
        bench_cold(tok, enc, text, "tinyshakespeare (ASCII)", args.repeat)
        not_ascii = varied(text.replace("'", "\u2019"), 0, share=0.3, non_ascii=0.6)
        label = "varied, non-ASCII (curly quotes, 1 word in 5 made up)"
        bench_cold(tok, enc, not_ascii, label, args.repeat)
    if "long" in parts:
        bench_long(tok, enc)
    if "stream" in parts:
        bench_stream(tok, enc, text, args.stream_mb)
    if "parallel" in parts:
        bench_parallel(tok, enc, text, args.stream_mb)


if __name__ == "__main__":
    main()
