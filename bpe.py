"""Byte-level BPE by hand: the algorithm, a fast trainer, GPT-2's exact tokenizer, real tokenizers.

Read top to bottom:
1. the teaching core: `get_stats` counts adjacent pairs, `merge` replaces a pair by a new id;
2. `train_bpe_naive`: recount every pair after every merge (slow, obviously right: the reference);
3. `train_bpe`: the same merges, fast: count each distinct pre-token once, keep a pair -> words
   index and a heap, and after a merge touch only the words that contained the merged pair;
4. `Tokenizer`: encode / decode with tiktoken's semantics, save / load in a small text format;
   the readable `_bpe` merges one pre-token, and fast paths on top of it (a bounded pre-token
   cache, new pre-tokens merged all together in numpy, long ones cut apart, merged in chunks
   glued where their tokens join, or by a heap) give the same ids;
5. GPT-2: download and verify its rank table, rebuild its 50,000 merges, `gpt2_tokenizer()`;
6. real tokenizers: a Hugging Face tokenizer.json or the tokenizer inside a GGUF file, with the
   same ids as Hugging Face's (`load_tokenizer_json`, `load_gguf_tokenizer`), and back to a
   tokenizer.json (`Tokenizer.to_hf_json`);
7. chat: ChatML written out by hand (`render_chat`);
8. the command line: `python bpe.py train|encode|decode|download-gpt2`.

A pre-token is one piece of the split: GPT-2's regex by default, or a list of split steps applied
in turn (SmolLM2: every digit alone, then GPT-2's regex). Merges never cross a pre-token, and text
is split on special tokens before that, so no merge crosses a special token either.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import heapq
import json
import os
import queue
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property, lru_cache, partial
from itertools import chain, compress, repeat
from operator import add, itemgetter, sub
from multiprocessing import Process, Queue
from pathlib import Path

import numpy as np
import regex
import tiktoken.load
from tqdm import tqdm

from configurator import ArgumentParser, quiet_broken_pipe
from files import (ANSWER, QUESTION, archive_files, atomic_write, atomic_write_dir, cache_dir,
                   check_dir_for, pypi_file, read_text)

# tiktoken's r50k/gpt2 pattern. Possessive `++` stops backtracking; `\s++$|\s+(?!\S)|\s` is GPT-2's
# original `\s+(?!\S)|\s+`: a whitespace run gives its last space to the word after it (" world").
GPT2_SPLIT_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++"""
                      r"""|\s++$|\s+(?!\S)|\s""")
# GPT-4's (cl100k): case-insensitive contractions, numbers in groups of at most 3, newlines apart.
GPT4_SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
                      r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}
# Llama 3's and Qwen2's patterns as their tokenizer.json files spell them: GPT-4's rules without
# possessive quantifiers; Qwen2 keeps every digit alone.
LLAMA3_SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                        r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                       r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
DIGITS_SPLIT = r"\p{N}"  # Hugging Face's Digits(individual_digits=True): every digit a piece alone
Split = str | Sequence[str]  # one split regex, or split steps applied in turn (see pretokenize)
GPT2_EOT = "<|endoftext|>"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# tiktoken's source of the rank table
# GPT-2's merges as gpt2_tokenizer caches them (see _cached_gpt2_merges)
GPT2_MERGES_SHA256 = "929e84b3be32ea1e3d811c85ca1885e5a368515cfec3dbddc8f5efa7d161a04b"
GPT2_RANKS_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
# the PyPI sdist that ships the same file: our offline source, pinned by its own sha256
GPT2_RANKS_SDIST = ("openai-whisper", "openai_whisper-20250625.tar.gz",
                    "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")
# A Tokenizer remembers the ids of the pre-tokens it met lately, in two dicts of up to CACHE_SIZE
# each (~15 MB each; the 64k most recent distinct words hold ~99% of a natural text's words).
CACHE_SIZE = 1 << 16
LONG_PIECE = 100  # a pre-token this long (characters) or longer is merged by _bpe_long
STITCH = 64  # characters per chunk _bpe_stitched cuts a long pre-token into (< LONG_PIECE)
NUMPY_MERGE_WORDS = 256  # words a merge rewrites, at the least, for _merge_words_numpy to do it
JOIN_BATCH = 4096  # pre-tokens whose ids _joined gathers at a time
WAVE_MIN = 32  # pre-tokens _bpe_waves merges together at the least; fewer go one by one
INF = float("inf")
INSTALL_HINT = "run the install command `python bpe.py download-gpt2` (see README.md)"


# ----------------------------------------------------------------------------- the teaching core
def get_stats(ids: list[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}.

    Updates `counts` in place, so that the pairs of many pre-tokens add up in one dict."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of `pair`, left to right, by `idx`.

    merge([1, 2, 1, 2], (1, 2), 9) -> [9, 9]; merge([5, 5, 5], (5, 5), 7) -> [7, 5]."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# The bytes GPT-2 shows as themselves: printable Latin-1, without the space and the soft hyphen.
PRINTABLE_BYTES = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                   *range(ord("®"), ord("ÿ") + 1)]


def bytes_to_unicode_order() -> list[int]:
    """GPT-2's byte order: printable bytes first ('!' is 0), then the rest (space is 220).

    GPT-2's byte-level ids, and the ids Hugging Face's ByteLevel BPE trainer gives the 256 bytes,
    follow it."""
    return PRINTABLE_BYTES + [b for b in range(256) if b not in PRINTABLE_BYTES]


def byte_level_chars() -> dict[int, str]:
    """{byte: the character that stands for it}: a printable byte for itself, the n-th other byte
    for chr(256 + n) (space is "Ġ"). GPT-2's bytes_to_unicode: how tokenizer.json and GGUF files
    write a token's bytes as text."""
    chars = {b: chr(b) for b in PRINTABLE_BYTES}
    others = [b for b in range(256) if b not in chars]
    return chars | {b: chr(256 + n) for n, b in enumerate(others)}


# The encoder's caches hold each pre-token's ids packed, 4 bytes (uint32) an id: pieces' ids
# join by one bytes.join, tens of thousands of cached values are not objects the cyclic garbage
# collector walks, and an encode_file worker sends its ids back as one buffer, not a pickled list.
def _pack(ids: Iterable[int] | np.ndarray) -> bytes:
    """ids as one bytes object, 4 bytes an id (uint32 in this machine's byte order)."""
    return np.asarray(ids, np.uint32).tobytes()


def _unpack(packed: bytes) -> tuple[int, ...]:
    """The ids _pack packed."""
    return tuple(np.frombuffer(packed, np.uint32).tolist())


def _cut(packed: bytes, ends: np.ndarray) -> Iterator[bytes]:
    """packed (ids, see _pack) cut after each of `ends` (ascending counts of ids): the packed ids
    of consecutive pieces, as slices of one bytes, in C."""
    bounds = (4 * ends).tolist()
    return map(packed.__getitem__, map(slice, chain([0], bounds), bounds))


def _joined(cache: dict[str, bytes], pieces: list[str]) -> bytes:
    """cache[piece] for each piece, joined (KeyError if one is missing).

    itemgetter looks a batch of pieces up in one call, in C (a quarter quicker than map), and the
    values are still in the CPU's cache when join copies them: twice as quick as all at once."""
    out = []
    for i in range(0, len(pieces), JOIN_BATCH):
        batch = pieces[i:i + JOIN_BATCH]  # (itemgetter of one key gives its value alone)
        out.append(b"".join(itemgetter(*batch)(cache)) if len(batch) > 1 else cache[batch[0]])
    return b"".join(out)


# ----------------------------------------------------------------------------- pre-tokenization
# The split patterns that match every character (so findall is Hugging Face's Isolated split):
# the standard library's `re` can run them, two to three times faster than `regex` (see
# _bmp_splitter).
FAST_PATTERNS = (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, LLAMA3_SPLIT_PATTERN, QWEN2_SPLIT_PATTERN)
ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # past the Basic Multilingual Plane (emoji)
UNICODE_CLASSES = (r"[^\s\p{L}\p{N}]", r"[^\r\n\p{L}\p{N}]", r"\p{L}", r"\p{N}", r"\S", r"\s")


@lru_cache(maxsize=None)
def _bmp_class(unicode_class: str) -> str:
    r"""A `re` set of the characters below U+10000 that `regex` matches by unicode_class, in runs:
    r"\p{N}" -> "[0-9\xb2-\xb3...]". Built by `regex` itself, so both agree on every one."""
    bmp = "".join(map(chr, range(0x10000)))
    codes = np.array([m.start() for m in regex.finditer(unicode_class, bmp)])
    new_run = np.diff(codes, prepend=-2) != 1
    firsts, lasts = codes[new_run].tolist(), codes[np.append(new_run[1:], True)].tolist()
    runs = (re.escape(chr(a)) + ("-" + re.escape(chr(b))) * (b > a) for a, b in zip(firsts, lasts))
    return "[" + "".join(runs) + "]"


@lru_cache(maxsize=None)
def _bmp_splitter(pattern: str) -> re.Pattern:
    r"""One of FAST_PATTERNS for `re`, for text without astral characters: each Unicode class
    spelled out as its characters below U+10000, from `regex` (see _bmp_class).

    `re` has no \p{L}, and its \s and \w are not `regex`'s (its \s adds \x1c-\x1f); the rest of
    these patterns means the same in both. Sets of BMP characters compile to a lookup table."""
    for unicode_class in UNICODE_CLASSES:  # classes inside [...] first, then the bare ones
        pattern = pattern.replace(unicode_class, _bmp_class(unicode_class))
    return re.compile(pattern)


def pretokenize(text: str, pattern: str | Sequence[str] = GPT2_SPLIT_PATTERN) -> list[str]:
    """Split text into pre-tokens: "Hello  world!" -> ["Hello", " ", " world", "!"].

    `pattern` is one regex, or a list of split steps applied in turn, each splitting every piece
    of the step before: SmolLM2's [DIGITS_SPLIT, GPT2_SPLIT_PATTERN] puts every digit alone first,
    so "a  12" gives ["a", "  ", "1", "2"], where GPT-2's regex alone gives ["a", " ", " 12"]."""
    if not isinstance(pattern, str):
        pieces = [text]
        for step in pattern:
            pieces = [p for piece in pieces for p in pretokenize(piece, step)]
        return pieces
    if pattern not in FAST_PATTERNS:
        return split_isolated(regex.compile(pattern), text)  # `regex` caches compiled patterns
    if text.isascii() or not ASTRAL.search(text):  # isascii() is O(1): str knows it
        return _bmp_splitter(pattern).findall(text)
    return regex.findall(pattern, text)


def split_isolated(pattern: regex.Pattern, text: str) -> list[str]:
    """The matches of `pattern` in text and the text between them, in order: nothing is dropped.

    Hugging Face's Split(behavior="Isolated"). For GPT-2's and GPT-4's patterns, which match every
    character, this is just findall."""
    pieces, end = [], 0
    for m in pattern.finditer(text):
        if m.start() > end:
            pieces.append(text[end:m.start()])
        if m.end() > m.start():
            pieces.append(m.group())
        end = m.end()
    if end < len(text):
        pieces.append(text[end:])
    return pieces


def _special_regex(special_tokens) -> regex.Pattern | None:
    """One alternation of the special tokens, longest first, or None if there are none.

    Longest first, so that of two overlapping special tokens the longer one matches."""
    if not special_tokens:
        return None
    ordered = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(s) for s in ordered))


def count_pretokens(text: str, special_tokens=(), pattern: Split = GPT2_SPLIT_PATTERN,
                    counts: Counter | None = None) -> Counter:
    """{pre-token: count} of a text, added to `counts` if given (as get_stats does).

    Special tokens are cut out first and never counted: no merge may reach into one."""
    special_re, counts = _special_regex(special_tokens), Counter() if counts is None else counts
    for part in special_re.split(text) if special_re else [text]:
        counts.update(pretokenize(part, pattern))
    return counts


def _read_chunk(path: str, start: int, end: int) -> str:
    """The text of bytes [start, end) of a file; invalid UTF-8 is a ValueError naming its offset.

    A worker process reads its own chunk, so only offsets travel between processes."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: invalid byte {data[e.start:e.start + 1]!r} at "
                         f"byte offset {start + e.start}; convert the file to UTF-8 "
                         "(e.g. `iconv -f latin1 -t utf-8`)") from None


@contextmanager
def _workers(target, arg_tuples: list[tuple], pattern: Split) -> Iterator[list[Process]]:
    """Daemon processes running target(*args), one for each of arg_tuples, started here and
    stopped at the end of the block, also on an error or when a caller stops early.

    The split regexes of `pattern` are built first, once: forked workers inherit them."""
    pretokenize("", pattern)
    procs = [Process(target=target, args=args, daemon=True) for args in arg_tuples]
    for p in procs:
        p.start()
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()  # (one still at work after an error, or when the caller stopped early)
            p.join()


def _next_result(results: Queue, procs: list[Process]):
    """The next thing a worker put on results. The error a worker put there instead is raised
    here, and a RuntimeError if a worker died (killed for memory, say), where waiting on would
    wait forever."""
    while True:
        try:
            got = results.get(timeout=1)
            if isinstance(got, Exception):
                raise got
            return got
        except queue.Empty:
            died = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if died:
                raise RuntimeError(f"a worker process died (exit code {died[0]}; -9 is often "
                                   "the kernel killing it for memory); try fewer processes "
                                   "(num_proc) or more memory") from None


def _count_chunks(jobs: list, counts: Counter) -> Iterator[None]:
    """Count the pre-tokens of each job's chunk (path, start, end, special tokens, pattern) into
    counts, yielding after each one (progress)."""
    for path, start, end, special_tokens, pattern in jobs:
        count_pretokens(_read_chunk(path, start, end), special_tokens, pattern, counts)
        yield


def _count_worker(jobs: list, results: Queue) -> None:
    """A counting process: counts its chunks into one Counter (see _count_chunks), puts None on
    results after each chunk and the Counter at the end, or the error it met. (One Counter from
    each worker: adding up one per chunk in the trainer's process cost as much as a third one.)"""
    try:
        counts = Counter()
        for _ in _count_chunks(jobs, counts):
            results.put(None)
        results.put(counts)
    except Exception as e:  # (sent to the trainer's process, which raises it)
        results.put(e)


def _chunk_boundaries(path: Path, special_tokens, chunk_bytes: int) -> list[int]:
    """Byte offsets that cut a file about every chunk_bytes, first 0 and last its size.

    Each cut moves forward to where a special token starts or to the start of a line where '\\n'
    sits between two visible ASCII characters: both are where GPT-2's, GPT-4's, Llama 3's and
    Qwen2's patterns (and a digits step before them) cut anyway, so counting or encoding chunks
    apart changes nothing. (Line cuts only if no special token holds a '\\n': then none can
    straddle one. A file with few special tokens still gets cut every ~chunk_bytes.)"""
    size = path.stat().st_size
    cuts = [regex.escape(s.encode("utf-8")) for s in special_tokens]
    if not any("\n" in s for s in special_tokens):
        cuts.append(rb"(?<=[\x21-\x7e]\n)[\x21-\x7e]")
    cut = regex.compile(b"|".join(cuts))
    # bytes a cut may need before a block
    keep = max([2] + [len(s.encode("utf-8")) for s in special_tokens])
    bounds = [0]
    with open(path, "rb") as f:
        for target in range(chunk_bytes, size, chunk_bytes):
            if target <= bounds[-1]:
                continue  # the previous cut moved past this one
            f.seek(target)
            pos, window = target, b""
            while True:
                block = f.read(1 << 16)
                if not block:
                    pos = size
                    break
                window = window[-keep:] + block  # keep a tail: a cut straddling two blocks is found
                m = cut.search(window)
                if m:
                    pos = pos - (len(window) - len(block)) + m.start()
                    break
                pos += len(block)
            if pos >= size:
                break
            bounds.append(pos)
    return bounds + [size]


def _file_chunks(path: Path, special_tokens, num_proc: int,
                 chunk_bytes: int | None) -> list[tuple[int, int]]:
    """(start, end) byte ranges that cover a file, each cut where splitting changes nothing.

    Chunks are about 4 MB (a chunk's list of pre-tokens costs ~15x its size; each ends at the
    first safe cut after that, see _chunk_boundaries) and, with several workers, small enough to
    give each ~4 of them."""
    if not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc={num_proc!r}: give at least 1 worker process "
                         "(num_proc=1 works in this one)")
    if chunk_bytes is None:
        per_worker = path.stat().st_size // (4 * num_proc)
        chunk_bytes = 4 << 20 if num_proc == 1 else min(4 << 20, max(1 << 18, per_worker))
    bounds = _chunk_boundaries(path, special_tokens, chunk_bytes)
    return list(zip(bounds, bounds[1:]))


def count_pretokens_in_file(path, special_tokens=(), pattern: Split = GPT2_SPLIT_PATTERN,
                            num_proc: int = 1, chunk_bytes: int | None = None,
                            progress: bool = False) -> Counter:
    """{pre-token: count} of a file of any size, counted chunk by chunk in `num_proc` processes.

    Memory holds a few chunks and the counts, never the whole text (see _file_chunks)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file {path} not found; pass an existing text file")
    chunks = _file_chunks(path, special_tokens, num_proc, chunk_bytes)
    jobs = [(str(path), s, e, tuple(special_tokens), pattern) for s, e in chunks]
    counts = Counter()
    with tqdm(total=len(jobs), desc="pre-tokenize", unit="chunk", disable=not progress) as bar:
        if num_proc == 1 or len(jobs) == 1:
            for _ in _count_chunks(jobs, counts):
                bar.update()
            return counts
        results = Queue()
        args = [(jobs[k::num_proc], results) for k in range(min(num_proc, len(jobs)))]
        with _workers(_count_worker, args, pattern) as procs:
            for _ in range(len(jobs) + len(procs)):  # a None per chunk, a Counter per worker
                got = _next_result(results, procs)
                if got is None:
                    bar.update()
                else:
                    counts.update(got)
    return counts


def _cut_specials(tok: Tokenizer, allowed_special) -> tuple[str, ...]:
    """The special tokens that encode(text, allowed_special) makes ids of: a file may be cut where
    one starts. Others are plain text there (or an error), so no cut may assume they split."""
    if allowed_special == "all":
        return tuple(tok.special_tokens)
    if isinstance(allowed_special, (set, frozenset, list, tuple)):
        return tuple(allowed_special)
    return ()


def _encode_file_chunk(tok: Tokenizer, job) -> np.ndarray:
    """The ids of bytes [start, end) of a file, as a uint32 array."""
    path, start, end, allowed_special = job
    return tok.encode_to_numpy(_read_chunk(path, start, end), allowed_special)


def _encode_worker(tok: Tokenizer, jobs: list, results: Queue) -> None:
    """An encoding process: puts the ids of each of its chunks on results, in order, or the error
    it met. (results holds two at the most: a worker ahead of the writer waits.)"""
    try:
        for job in jobs:
            results.put(_encode_file_chunk(tok, job))
    except Exception as e:  # (sent to encode_file's process, which raises it)
        results.put(e)


def encode_file(tok: Tokenizer, path, allowed_special="none_raise", num_proc: int = 1,
                chunk_bytes: int | None = None, progress: bool = False) -> Iterator[np.ndarray]:
    """Yield the ids of a file of any size, chunk by chunk as uint32 arrays, in file order: joined,
    they are tok.encode(text, allowed_special) of the whole text.

    The file is cut where the split pattern cuts anyway (see _chunk_boundaries: the starts of the
    special tokens that become ids, and line starts between visible characters), the chunks are
    encoded in `num_proc` processes, and memory holds a few chunks, never the whole text or all
    of its ids. progress: a bar in bytes of text."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass an existing text file")
    specials = _cut_specials(tok, allowed_special)
    jobs = [(str(path), s, e, allowed_special)
            for s, e in _file_chunks(path, specials, num_proc, chunk_bytes)]
    with tqdm(total=path.stat().st_size, desc=f"encode {path.name}", unit="B", unit_scale=True,
              disable=not progress) as bar:
        if num_proc == 1 or len(jobs) == 1:
            for job in jobs:
                ids = _encode_file_chunk(tok, job)
                bar.update(job[2] - job[1])
                yield ids
            return
        # chunk i is encoded by worker i % n, which puts its chunks' ids on a queue of its own
        queues = [Queue(2) for _ in range(min(num_proc, len(jobs)))]
        args = [(tok, jobs[k::len(queues)], q) for k, q in enumerate(queues)]
        with _workers(_encode_worker, args, tok.pattern) as procs:
            for i, job in enumerate(jobs):
                ids = _next_result(queues[i % len(queues)], procs)
                bar.update(job[2] - job[1])
                yield ids


# ----------------------------------------------------------------------------- training
TIE_BREAKS = ("bytes", "hf")


def _check_train_args(vocab_size: int, special_tokens, tie_break: str) -> int:
    """The number of merges to learn, after checking the arguments.

    vocab_size must hold the 256 bytes and the special tokens; the rest are merges."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break={tie_break!r} is unknown; use one of {TIE_BREAKS}")
    if len(set(special_tokens)) != len(special_tokens) or any(not s for s in special_tokens):
        raise ValueError(f"special tokens {list(special_tokens)!r} must be distinct non-empty "
                         "strings")
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must hold the 256 bytes and "
                         f"the {len(special_tokens)} special token(s), so use at least "
                         f"{256 + len(special_tokens)}")
    if vocab_size > sys.maxunicode:  # (a token is a character, chr(id), while training)
        raise ValueError(f"vocab_size={vocab_size:,} is too large: use at most {sys.maxunicode:,}")
    return n_merges


def _finish(merges: list[tuple[int, int]], special_tokens, pattern: Split) -> Tokenizer:
    """The trained Tokenizer: bytes 0..255 (id b is byte b), the merges in creation order, then
    the special tokens."""
    vocab = {i: bytes([i]) for i in range(256)}
    merge_ids = {}
    for i, (a, b) in enumerate(merges):
        merge_ids[(a, b)] = 256 + i
        vocab[256 + i] = vocab[a] + vocab[b]
    specials = {s: len(vocab) + i for i, s in enumerate(special_tokens)}
    return Tokenizer(merge_ids, vocab, specials, pattern, learned=True)


def train_bpe_naive(text: str, vocab_size: int, special_tokens=(),
                    pattern: Split = GPT2_SPLIT_PATTERN, tie_break: str = "bytes") -> Tokenizer:
    """The reference trainer: every pre-token occurrence as a list of byte ids, recount all pairs
    after each merge, merge the most frequent.

    Equal counts: the greater (bytes_a, bytes_b) wins, or with tie_break="hf" the pair with the
    smaller ids in GPT-2's byte order (Hugging Face's rule)."""
    special_tokens = list(special_tokens)
    n_merges = _check_train_args(vocab_size, special_tokens, tie_break)
    special_re = _special_regex(special_tokens)
    parts = special_re.split(text) if special_re else [text]
    chunks = [list(piece.encode("utf-8")) for part in parts for piece in pretokenize(part, pattern)]
    if not chunks:
        raise ValueError("the training corpus is empty (no text outside special tokens); "
                         "give it some text")
    vocab = {i: bytes([i]) for i in range(256)}
    # new ids get 256, 257, ...: in Hugging Face's numbering too
    hf_rank = {b: r for r, b in enumerate(bytes_to_unicode_order())}
    merges = []
    for i in range(n_merges):
        stats = {}
        for ids in chunks:
            get_stats(ids, stats)
        if not stats:
            break  # every pre-token is a single token: nothing left to merge
        if tie_break == "hf":
            pair = max(stats, key=lambda p: (stats[p], -hf_rank.get(p[0], p[0]),
                                             -hf_rank.get(p[1], p[1])))
        else:
            pair = max(stats, key=lambda p: (stats[p], vocab[p[0]], vocab[p[1]]))
        idx = 256 + i
        chunks = [merge(ids, pair, idx) for ids in chunks]
        vocab[idx] = vocab[pair[0]] + vocab[pair[1]]
        merges.append(pair)
    return _finish(merges, special_tokens, pattern)


def _bpe_merges(word_counts: dict[str, int], n_merges: int, tie_break: str = "bytes",
                progress: bool = False) -> list[tuple[int, int]]:
    """The fast trainer's core: the same merges as train_bpe_naive, from {pre-token: count}.

    A heap holds (-count, tie key, pair), so the top is the winner, ties included, in O(log n).
    Counts change after every merge; instead of updating heap entries we leave stale ones in and
    check on pop: a popped entry whose count is no longer the pair's count is pushed back with the
    right count (counts of existing pairs only go down, so the first up-to-date top is the true
    winner, as in HF's trainer). A pair born in a merge waits outside the heap until the top's
    count comes within a factor of two of its own: most never get that far."""
    if tie_break == "hf":
        rank = [0] * 256
        for r, b in enumerate(bytes_to_unicode_order()):
            rank[b] = r
        tie_key = lambda p: (rank[ord(p[0])], rank[ord(p[1])])  # smaller ids win
    else:
        # To make a min-heap prefer the greater bytes, map each byte c to chr(255 - c) and end every
        # token with chr(256), greater than any mapped byte: then key(x) < key(y) exactly when
        # x > y (a prefix of a token is smaller than the token, so its key, ending early with
        # chr(256), must be greater).
        inv = [chr(255 - i) + chr(256) for i in range(256)]
        tie_key = lambda p: inv[ord(p[0])] + inv[ord(p[1])]

    # A word is a str with one character per token, chr(id): str.find and str.replace then scan and
    # merge in C, and a pair is a 2-character str, a cheap dict key. (str.replace is `merge`: left
    # to right, no overlap.)
    words = [w.encode("utf-8").decode("latin-1") for w in word_counts]  # chr(byte) per byte
    counts = list(word_counts.values())
    pair_counts, where = _byte_pairs(words, counts)
    heap = [(-c, tie_key(p), p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    waiting = defaultdict(list)  # bit length of a born pair's count -> pairs not in the heap
    level = max(pair_counts.values(), default=0).bit_length()  # born counts < 2**level wait

    merges = []
    bar = tqdm(total=n_merges, desc="merges", unit="merge", disable=not progress)
    while len(merges) < n_merges:
        # a waiting pair may beat the top: let its count class in (its count only went down since)
        while level and (not heap or -heap[0][0] < 1 << level):
            for p in waiting.pop(level, ()):
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], tie_key(p), p))
            level -= 1
        if not heap:
            break
        neg, _, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale: the pair's count went down since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, tie_key(pair), pair))
            continue
        a, b = ord(pair[0]), ord(pair[1])
        idx = 256 + len(merges)
        merges.append((a, b))
        if tie_break == "hf":
            rank.append(idx)  # HF numbers new tokens in creation order too
        else:
            inv.append(inv[a][:-1] + inv[b])  # mapped bytes of a, of b, one terminator
        born = _merge_words(pair, chr(idx), words, counts, pair_counts, where)
        del pair_counts[pair]  # every occurrence is gone (lost pairs may reach 0: harmless)
        pair_counts.update(born)  # new pairs (they hold idx): the only counts that go up
        for p, c in born.items():
            if c >> level:  # c >= 2**level: it may win before the waiting ones
                heapq.heappush(heap, (-c, tie_key(p), p))
            else:
                waiting[c.bit_length()].append(p)
        if progress:
            bar.update()
    bar.close()
    return merges


def _byte_pairs(words: list[str], counts: list[int]) -> tuple[defaultdict, defaultdict]:
    """({pair: its count in all words}, {pair: the indices of the words that hold it, once per
    occurrence, as (array, start, end)}) of words of one character per byte; the trainer's
    start, counted in numpy.

    The same as a loop over every pair of every word, `pair_counts[w[i:i + 2]] += c` and
    `where[w[i:i + 2]].append(wi)`, which took a sixth of training on 10 MB of varied text."""
    pair_counts, where = defaultdict(int), defaultdict(list)
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    word = np.repeat(np.arange(len(words), dtype=np.int32), lengths)  # (N,) each byte's word
    inside = word[1:] == word[:-1]  # (N - 1,) the pairs within a word
    raw = np.frombuffer("".join(words).encode("latin-1"), np.uint8).astype(np.uint16)
    codes = (raw[:-1] << 8 | raw[1:])[inside]  # (P,) each pair as a << 8 | b
    # each pair's occurrences together, their words in order: one sort of pair << 32 | word
    word = (np.sort(codes.astype(np.int64) << 32 | word[:-1][inside]) & 0xFFFFFFFF).astype(np.int32)
    sizes = np.bincount(codes, minlength=1 << 16)  # (65536,) occurrences of each pair
    present = np.flatnonzero(sizes)
    pairs = _pair_names(present >> 8 << 21 | present & 255)
    ends = np.cumsum(sizes[present])
    totals = np.add.reduceat(np.asarray(counts)[word], ends - sizes[present])
    pair_counts.update(zip(pairs, totals.tolist()))
    ends = ends.tolist()
    where.update(zip(pairs, zip(repeat(word), [0, *ends], ends)))  # (as _merge_words reads them)
    return pair_counts, where


def _merge_words(pair: str, C: str, words: list[str], counts: list[int], pair_counts: dict,
                 where: dict) -> dict[str, int]:
    """{pair: count} of the pairs a merge gives birth to, after rewriting every word that holds
    `pair` with the new token C and taking the pairs it breaks off pair_counts.

    Around each occurrence x a b y, pairs (x, a) and (b, y) are lost, (x, C) and (C, y) are born
    ("a b a b" gives one (C, C)); `where` learns which words hold the new pairs. Many words at
    once go to _merge_words_numpy, which gives the same."""
    listed = where.pop(pair)
    if isinstance(listed, tuple):  # (array, start, end): see _merge_words_numpy
        array, start, end = listed
        listed = array[start:end].tolist()
    # the words that still hold the pair: in nearly half, an earlier merge took it apart since
    holders = [wi for wi in listed if pair in words[wi]]
    if len(holders) >= NUMPY_MERGE_WORDS:
        return _merge_words_numpy(pair, C, words, counts, pair_counts, where, holders)
    CC = C + C
    born = defaultdict(list)  # pair born -> the word of each of its occurrences
    for wi in holders:
        w, c = words[wi], counts[wi]
        i, end = w.find(pair), -1
        while i >= 0:
            if i == end:  # right after the previous occurrence: the pair (C, C) is born
                born[CC].append(wi)
            elif i:
                pair_counts[w[i - 1:i + 1]] -= c  # (x, a) is lost
                born[w[i - 1] + C].append(wi)
            end = i + 2
            if end < len(w):
                pair_counts[w[i + 1:i + 3]] -= c  # (b, y) is lost
                if not w.startswith(pair, end):  # else the next occurrence counts (C, C)
                    born[C + w[end]].append(wi)
            i = w.find(pair, end)
        words[wi] = w.replace(pair, C)
    where.update(born)  # (new pairs: where knew none of them)
    return {p: sum(map(counts.__getitem__, ws)) for p, ws in born.items()}


def _merge_words_numpy(pair: str, C: str, words: list[str], counts: list[int], pair_counts: dict,
                       where: dict, holders: list[int]) -> dict[str, int]:
    """_merge_words for many words at once (the holders of pair): every occurrence, the pairs it
    loses and the pairs it gives birth to found in numpy over all the words' tokens together.

    The same counts and words as the loop. The word lists of the pairs born go to `where` as
    (array, start, end), made a list only if the pair is merged (most never are); their order is
    not the loop's, which changes nothing (the heap orders pairs by count and tie key alone)."""
    holders = list(dict.fromkeys(holders))  # (a word with the pair twice is listed twice)
    texts = list(map(words.__getitem__, holders))
    a, b, c = ord(pair[0]), ord(pair[1]), ord(C)
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    ends = np.cumsum(lengths)
    joined = "".join(texts).encode("utf-32-le", "surrogatepass")  # a token id per character
    tokens = np.frombuffer(joined, np.uint32).astype(np.int64)  # (N,)
    word = np.repeat(np.arange(len(texts)), lengths)  # (N,) the holder each token is in
    hit = np.flatnonzero((tokens[:-1] == a) & (tokens[1:] == b) & (word[:-1] == word[1:]))
    if a == b:  # in a run a a a, str.replace takes every other pair from the left
        hit = _every_other_in_runs(hit)
    is_hit = np.zeros(len(tokens) + 2, bool)  # (two False at the end: hit - 2 may wrap there)
    is_hit[hit] = True
    k = word[hit]  # (H,) the holder of each occurrence
    left = hit > ends[k] - lengths[k]  # a token x before a
    after = is_hit[hit - 2] & left  # right after the previous occurrence: (C, C) is born
    left &= ~after
    right = hit + 2 < ends[k]  # a token y after b
    # lost: (x, a), (b, y); born: (x, C), (C, C), (C, y) unless y starts the next occurrence
    x, y = tokens[hit[left] - 1], tokens[hit[right] + 2]
    lost = np.concatenate([x << 21 | a, b << 21 | y])  # pairs as first << 21 | second
    weight = np.fromiter(map(counts.__getitem__, holders), np.int64, len(holders))  # (holders,)
    keys, totals, _, _ = _sums_by_key(lost, weight[np.concatenate([k[left], k[right]])])
    names = _pair_names(keys)
    pair_counts.update(zip(names, map(sub, map(pair_counts.__getitem__, names), totals.tolist())))
    y_born = ~is_hit[hit[right] + 2]
    born = np.concatenate([x << 21 | c, np.full(after.sum(), c << 21 | c), c << 21 | y[y_born]])
    born_k = np.concatenate([k[left], k[after], k[right][y_born]])
    keys, totals, order, starts = _sums_by_key(born, weight[born_k])
    names = _pair_names(keys)
    in_order, bounds = np.asarray(holders)[born_k[order]], starts.tolist()[1:]
    where.update(zip(names, zip(repeat(in_order), [0, *bounds], [*bounds, len(in_order)])))
    for wi, w in zip(holders, texts):
        words[wi] = w.replace(pair, C)
    return dict(zip(names, totals.tolist()))


def _every_other_in_runs(hit: np.ndarray) -> np.ndarray:
    """The occurrences of a pair (a, a) that merge, from their ascending starts: in a run of
    consecutive starts (a a a a) they overlap, and every other one from the run's left is taken."""
    first = np.ones(len(hit), bool)
    first[1:] = np.diff(hit) != 1
    return hit[(hit - hit[first][np.cumsum(first) - 1]) % 2 == 0]


def _sums_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """(each distinct key, ascending; the sum of its weights; the order that sorts keys; where each
    key's run starts in that order)."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.diff(keys, prepend=-1))  # (keys >= 0)
    return keys[starts], np.add.reduceat(weights[order], starts), order, starts


def _pair_names(keys: np.ndarray) -> list[str]:
    """Pairs as first << 21 | second (token ids) -> 2-character strs, as the trainer keys them."""
    return [chr(p >> 21) + chr(p & 0x1FFFFF) for p in keys.tolist()]


def train_bpe(source: str | os.PathLike, vocab_size: int, special_tokens=(),
              pattern: Split = GPT2_SPLIT_PATTERN, tie_break: str = "bytes", num_proc: int = 1,
              progress: bool = False) -> Tokenizer:
    """The fast trainer. `source` is the text itself (a str) or a file (a Path / os.PathLike).

    vocab_size counts the 256 bytes, the merges and the special tokens. Fewer merges are learned if
    every pre-token is already a single token. Same result as train_bpe_naive, merge for merge."""
    special_tokens = list(special_tokens)
    n_merges = _check_train_args(vocab_size, special_tokens, tie_break)
    if (isinstance(source, str) and "\n" not in source and len(source) < 4096
            and os.path.isfile(source)):
        raise ValueError(f"train_bpe got the str {source!r}, which names a file: a str is trained "
                         "on as text; pass Path(...) to train on the file")
    if isinstance(source, str):
        word_counts = count_pretokens(source, special_tokens, pattern)
    else:
        word_counts = count_pretokens_in_file(source, special_tokens, pattern, num_proc,
                                              progress=progress)
    if not word_counts:
        where = "the training text" if isinstance(source, str) else f"training file {source}"
        raise ValueError(f"{where} is empty (no text outside special tokens); give it some text")
    merges = _bpe_merges(word_counts, n_merges, tie_break, progress)
    if len(merges) < n_merges:  # said, not silent: a 10,000-token request can end at 482
        print(f"note: the text has no pair left to merge after {len(merges)} merges, so the "
              f"vocabulary has {256 + len(merges) + len(special_tokens)} tokens, not the "
              f"{vocab_size} asked for; train on more text for more", file=sys.stderr)
    return _finish(merges, special_tokens, pattern)


# ----------------------------------------------------------------------------- the tokenizer
FORMAT_HEADER = "scratchgpt-bpe 2"
OLD_HEADERS = ("scratchgpt-bpe 1",)  # one pattern line, eot implied by <|endoftext|>: still read
SAVED_FILES = ("tokenizer.bpe", "vocab.txt")  # what Tokenizer.save writes: the model, a listing
NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD")  # Unicode normal forms, as unicodedata names them


def _hash_slot(keys: np.ndarray, size: int) -> np.ndarray:
    """Each key's home slot in a table of `size` (a power of two) slots: Fibonacci hashing, the
    top bits of key * 2**64 / golden ratio (int64 products wrap around; the mask drops the sign)."""
    product = keys * np.int64(0x9E3779B97F4A7C15 - (1 << 64))
    return product >> np.int64(65 - size.bit_length()) & (size - 1)


def _hash_find(slots: np.ndarray, values: np.ndarray, keys: np.ndarray, missing: int) -> np.ndarray:
    """values[the slot holding each key], or `missing` where a key is not in the table.

    Looks in all keys' slots at once, then moves those not settled yet to their next slot."""
    at = _hash_slot(keys, len(slots))
    found = slots[at]
    out = np.where(found == keys, values[at], missing).astype(values.dtype)
    todo = np.flatnonzero((found != -1) & (found != keys))  # an empty slot ends the search
    at = (at[todo] + 1) & (len(slots) - 1)
    while len(todo):
        found = slots[at]
        here = found == keys[todo]
        out[todo[here]] = values[at[here]]
        go = (found != -1) & ~here
        todo, at = todo[go], (at[go] + 1) & (len(slots) - 1)
    return out


class Tokenizer:
    """A byte-level BPE tokenizer.

    merges: {(id_a, id_b): new_id} in the order they were learned (earlier merges apply first), or
        a list of (bytes_a, bytes_b) pairs (new id: the id of bytes_a + bytes_b in vocab).
    vocab: {id: bytes}; must hold every single byte (unless drop_missing_bytes). Ids are whatever
        it says (GPT-2's are permuted).
    special_tokens: {text: id}; an id missing from vocab is added with the token's UTF-8 bytes.
    pattern: the split regex, or a list of split steps applied in turn (see pretokenize).
    learned: the merges are a BPE trainer's, in the order it learned them (ours, or GPT-2's rank
        table). Then a pre-token that is a whole token is known to encode to that token (see _whole
        below); else it is checked.
    ignore_merges: a pre-token that is a whole token is that token, even where BPE would not get
        there (Hugging Face's ignore_merges: Llama 3 has it).
    normalizer: None, or the Unicode normal form ("NFC", ...) text is put in before splitting
        (Qwen2's tokenizer.json asks for NFC); special tokens are matched before it.
    eot_id: the id that ends a document or an answer (sample.py stops there, sft.py appends it);
        default: <|endoftext|>'s, if that is a special token. Settable: `tok.eot_id = 2`.
    chat_template: the source's chat template text (a Jinja template), kept, never run: see
        render_chat.
    drop_missing_bytes: a byte the vocab has no token for is dropped from the text, as Hugging
        Face (with no unk_token) and llama.cpp do: SmolLM2's vocab lacks 21 bytes text hardly holds
        (some control characters, bytes UTF-8 never uses). Else such a vocab is refused.
    """

    def __init__(self, merges, vocab: dict[int, bytes],
                 special_tokens: dict[str, int] | None = None, pattern: Split = GPT2_SPLIT_PATTERN,
                 learned: bool = False, *, ignore_merges: bool = False,
                 normalizer: str | None = None, eot_id: int | None = None,
                 chat_template: str | None = None, drop_missing_bytes: bool = False):
        self.vocab = dict(vocab)
        if not self.vocab:
            raise ValueError("the vocab is empty; a byte-level vocab needs at least the 256 "
                             "single-byte tokens")
        self.special_tokens = dict(special_tokens or {})
        for s, i in self.special_tokens.items():
            if not isinstance(s, str) or not s:
                raise ValueError(f"special token {s!r} (id {i}) must be a non-empty string")
            if self.vocab.setdefault(i, s.encode("utf-8")) != s.encode("utf-8"):
                raise ValueError(f"special token {s!r} has id {i}, which the vocab already uses "
                                 f"for {self.vocab[i]!r}; give it an unused id")
        self.merges = self._merge_ids(merges)
        self.n_vocab = max(self.vocab) + 1
        if min(self.vocab) < 0 or self.n_vocab > sys.maxunicode:
            raise ValueError(f"token ids must be in 0..{sys.maxunicode}, got "
                             f"{min(self.vocab)}..{self.n_vocab - 1}")
        self.eot_id = self.special_tokens.get(GPT2_EOT) if eot_id is None else eot_id
        self.pattern = self._check_pattern(pattern)
        if normalizer not in (None, *NORMALIZERS):
            raise ValueError(f"normalizer={normalizer!r}; use None or one of {NORMALIZERS}")
        self.normalizer, self.ignore_merges = normalizer, bool(ignore_merges)
        self.chat_template, self.drop_missing_bytes = chat_template, bool(drop_missing_bytes)
        single = {}  # byte -> the smallest id of a one-byte token
        ones = compress(self.vocab, map((1).__eq__, map(len, self.vocab.values())))  # in C
        for i in sorted(ones, reverse=True):
            single[self.vocab[i][0]] = i
        missing = [b for b in range(256) if b not in single]
        if missing and not drop_missing_bytes:
            raise ValueError(f"the vocab lacks {len(missing)} single-byte token(s), e.g. byte "
                             f"{missing[0]}; a byte-level vocab needs all 256 to encode any text")
        # As in the fast trainer, a token sequence is a str of chr(id), a pair a 2-character str:
        # the BPE loop below then runs in C calls. GPT-2's byte ids are permuted: byte b starts as
        # chr(id of bytes([b])); a missing byte maps to None, which str.translate deletes.
        self._byte_chars = {b: chr(single[b]) if b in single else None for b in range(256)}
        self._special_re = _special_regex(self.special_tokens)
        # pre-token -> packed ids (see _pack), young and old (see _remember): text repeats words
        self._cache: dict[str, bytes] = {}
        self._old_cache: dict[str, bytes] = {}
        self._remerged: dict[tuple[int, ...], tuple[int, ...]] = {}  # see _remerge
        # A pre-token that is a whole token is that one id, without running BPE: tiktoken's rule,
        # and about half of a text's distinct words are whole GPT-2 tokens. For learned merges BPE
        # gets there anyway: training made token t from a word in which no merge crossed t's
        # edges, so t's bytes alone merge the same way, in the same order, up to t. Any merge list
        # need not: with merges b+c, a+b, ab+c, "abc" is [a, bc]. So unless the merges are learned
        # (or ignore_merges says to take whole tokens anyway), each token is checked once, here.
        # (A token that is not UTF-8 text is never a whole pre-token.)
        specials = set(self.special_tokens.values())
        texts = zip(map(readable, self.vocab.values()), self.vocab)
        one = list(_cut(_pack(range(self.n_vocab)), np.arange(1, self.n_vocab + 1)))  # id i -> (i,)
        self._whole = {t: one[i] for t, i in texts if isinstance(t, str) and i not in specials}
        if not (learned or self.ignore_merges):  # keep the tokens BPE gets to
            ids = self._bpe_many(list(self._whole))
            self._whole = {t: i for t, i in self._whole.items() if ids[t] == i}

    def _merge_ids(self, merges) -> dict[tuple[int, int], int]:
        """{(id_a, id_b): new_id} in merge order, checked against the vocab.

        Merges given as (bytes_a, bytes_b) pairs find their ids by bytes (special tokens aside)."""
        if not isinstance(merges, dict):
            specials = set(self.special_tokens.values())
            by_bytes = {v: i for i, v in self.vocab.items() if i not in specials}
            ids = {}
            for n, (x, y) in enumerate(merges):
                for t in (x, y, x + y):
                    if t not in by_bytes:
                        raise ValueError(f"merge #{n} ({x!r}, {y!r}): {t!r} is not in the vocab; "
                                         "merges and vocab must come from the same training run")
                ids[(by_bytes[x], by_bytes[y])] = by_bytes[x + y]
            merges = ids
        vocab = self.vocab
        # In C, in bulk (GPT-2's 50,000 in a few ms): every made token is as long as its two parts,
        # and all made tokens joined are all parts joined, so each is its parts.
        try:
            made = list(map(vocab.get, merges.values()))
            firsts, seconds = zip(*merges) if merges else ((), ())
            parts_len = map(add, map(len, map(vocab.__getitem__, firsts)),
                            map(len, map(vocab.__getitem__, seconds)))
            parts = map(vocab.__getitem__, chain.from_iterable(merges))
            ok = list(map(len, made)) == list(parts_len) and b"".join(made) == b"".join(parts)
        except (KeyError, TypeError):  # TypeError: len(None), a made id not in the vocab
            ok = False
        for (a, b), i in ([] if ok else merges.items()):  # find the bad one, say which
            if a not in vocab or b not in vocab or vocab.get(i) != vocab[a] + vocab[b]:
                raise ValueError(f"merge ({a}, {b}) -> {i} does not match the vocab (id {i} must "
                                 "be the bytes of a followed by those of b); merges and vocab "
                                 "must belong together")
        return dict(merges)

    @staticmethod
    def _check_pattern(pattern: Split) -> Split:
        """The pattern as stored: one regex as a str, several split steps as a tuple.

        Each is compiled once here, so that a bad one fails now, not at the first encode."""
        steps = [pattern] if isinstance(pattern, str) else list(pattern)
        if not steps:
            raise ValueError("pattern is an empty list; give a split regex, e.g. "
                             "bpe.GPT2_SPLIT_PATTERN")
        for step in steps:
            try:
                regex.compile(step)
            except (regex.error, TypeError) as e:
                raise ValueError(f"split pattern {step!r} is not a valid regex ({e}); use "
                                 "bpe.GPT2_SPLIT_PATTERN or bpe.GPT4_SPLIT_PATTERN") from None
        return steps[0] if len(steps) == 1 else tuple(steps)

    @property
    def split_steps(self) -> tuple[str, ...]:
        """The split regexes in the order they apply.

        One, unless the source splits digits first (SmolLM2) or the like."""
        return (self.pattern,) if isinstance(self.pattern, str) else self.pattern

    @property
    def eot_id(self) -> int | None:
        """The id that ends a document or an answer, or None.

        A property, so that setting it checks the id is one of this tokenizer's."""
        return self._eot_id

    @eot_id.setter
    def eot_id(self, i: int | None) -> None:
        if i is not None and i not in self.vocab:
            raise ValueError(f"eot_id={i!r} is not a token id of this tokenizer "
                             f"(0..{self.n_vocab - 1}); give an id of its vocab, or None")
        self._eot_id = i

    # -- encoding
    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Ids of one pre-token: start from its bytes, merge the pair with the earliest-learned
        merge (leftmost first), repeat.

        One merge at a time gives what `merge`-ing every occurrence would: a pair born from a merge
        always ranks after it, so all occurrences go before anything else does."""
        parts = list(piece.encode("utf-8").decode("latin-1").translate(self._byte_chars))
        rank_of, merged = self._rank.get, self._merged
        # ranks[i]: the rank of the pair (parts[i], parts[i + 1])
        ranks = list(map(rank_of, map(str.__add__, parts[:-1], parts[1:]), repeat(INF)))
        while ranks:
            best = min(ranks)
            if best == INF:
                break
            i = ranks.index(best)
            new = merged[best]
            parts[i:i + 2] = (new,)
            del ranks[i]
            if i:  # only the two pairs around the new token change
                ranks[i - 1] = rank_of(parts[i - 1] + new, INF)
            if i < len(ranks):
                ranks[i] = rank_of(new + parts[i + 1], INF)
        return tuple(map(ord, parts))

    def _bpe_heap(self, piece: str) -> tuple[int, ...]:
        """_bpe's ids in O(n log n): the same merges in the same order, for a long pre-token.

        _bpe rescans every pair after each merge: quadratic, 100 s for 100,000 letters. Here a heap
        holds every pair as rank, start, end (one int, so it orders by rank, then leftmost) and
        each token knows where its right neighbour starts. A merge pushes the two new pairs and
        leaves the two it broke in the heap: they are skipped when popped, as their span is gone."""
        parts = list(piece.encode("utf-8").decode("latin-1").translate(self._byte_chars))
        n, rank_of, merged = len(parts), self._rank.get, self._merged
        bits = n.bit_length()
        mask, rank_shift = (1 << bits) - 1, 2 * bits
        nxt, prv = list(range(1, n + 2)), list(range(-1, n))  # token at i: parts[i], ends at nxt[i]
        pair_ranks = map(rank_of, map(str.__add__, parts[:-1], parts[1:]))
        heap = [r << rank_shift | i << bits | i + 2
                for i, r in enumerate(pair_ranks) if r is not None]
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            key = pop(heap)
            i, end = key >> bits & mask, key & mask
            if parts[i] is None or nxt[nxt[i]] != end:
                continue  # stale: a token of this pair was merged into another one since
            j, new = nxt[i], merged[key >> rank_shift]
            parts[i], parts[j], nxt[i], prv[end] = new, None, end, i
            if i:  # the pair (left neighbour, new) is born
                left = prv[i]
                r = rank_of(parts[left] + new)
                if r is not None:
                    push(heap, r << rank_shift | left << bits | end)
            if end < n:  # and (new, right neighbour)
                r = rank_of(new + parts[end])
                if r is not None:
                    push(heap, r << rank_shift | i << bits | nxt[end])
        return tuple(ord(p) for p in parts if p is not None)

    @cached_property
    def _rank(self) -> dict[str, int]:
        """{chr(a) + chr(b): rank}: earlier merge, lower rank. Built on first use, as the next
        ones: a tokenizer that only decodes never needs them."""
        firsts, seconds = zip(*self.merges) if self.merges else ((), ())
        pairs = map(str.__add__, map(chr, firsts), map(chr, seconds))
        return dict(zip(pairs, range(len(self.merges))))

    @cached_property
    def _merged(self) -> list[str]:
        """rank -> chr(the token that merge makes)."""
        return list(map(chr, self.merges.values()))

    @cached_property
    def _tables(self) -> tuple[np.ndarray, ...] | None:
        """(a hash table of the merges: keys a * n_vocab + b and their ranks, rank -> merged id,
        byte -> id or -1, byte pair -> rank, byte pair -> whether some token holds it), or None
        where _bpe_waves would not give _bpe's ids.

        Built on first use. _bpe_waves merges every occurrence of a piece's lowest-rank pair in one
        step; that is _bpe's one-at-a-time order only if every pair a merge gives birth to ranks
        after that merge (true of learned merges; a hand-made list may break it)."""
        pairs = np.fromiter(chain.from_iterable(self.merges), np.int64, 2 * len(self.merges))
        first, second = pairs.reshape(-1, 2).T  # (n_merges,) each
        rank = np.arange(len(self.merges))
        made_at = np.full(self.n_vocab, -1)
        np.maximum.at(made_at, np.fromiter(self.merges.values(), np.int64, len(self.merges)), rank)
        if np.any((rank <= made_at[first]) | (rank <= made_at[second])):
            return None
        keys = first * self.n_vocab + second
        # open addressing, quarter full: a key goes to the first free slot from its hash
        slots = np.full(1 << (4 * len(keys)).bit_length(), -1, np.int64)
        ranks = np.full(len(slots), len(self.merges), np.int32)
        todo, at = np.arange(len(keys)), _hash_slot(keys, len(slots))
        while len(todo):
            free = todo[slots[at[todo]] == -1]
            taken, one = np.unique(at[free], return_index=True)  # one key per free slot
            slots[taken], ranks[taken] = keys[free[one]], free[one]
            todo = np.setdiff1d(todo, free[one], assume_unique=True)
            at[todo] = (at[todo] + 1) % len(slots)
        merged = np.array([*self.merges.values(), -1], dtype=np.int32)
        byte_ids = np.array([ord(c) if c else -1 for c in self._byte_chars.values()], np.int32)
        # the first wave's pairs are pairs of bytes: their ranks by byte_a * 256 + byte_b
        pairs = (byte_ids[:, None].astype(np.int64) * self.n_vocab + byte_ids).ravel()  # (65536,)
        byte_pairs = _hash_find(slots, ranks, pairs, len(self.merges))
        specials = set(self.special_tokens.values())
        tokens = [v for i, v in self.vocab.items() if i not in specials]
        joined = np.frombuffer(b"".join(tokens), np.uint8).astype(np.int64)
        within = np.ones(max(len(joined) - 1, 0), bool)  # (j, j + 1) in one token
        within[np.cumsum([len(t) for t in tokens])[:-1] - 1] = False
        held = np.zeros(256 * 256, bool)
        held[(joined[:-1] << 8 | joined[1:])[within]] = True
        return slots, ranks, merged, byte_ids, byte_pairs, held

    def _pair_ranks(self, tokens: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The rank of the pair (tokens[i], tokens[i + 1]) for each i in `at`, len(merges) where
        it is no merge; the caller sets it at each piece's last token (ends - 1): no pair starts
        there."""
        slots, ranks = self._tables[:2]
        right = np.minimum(at + 1, len(tokens) - 1)
        pairs = tokens[at].astype(np.int64) * self.n_vocab + tokens[right]
        return _hash_find(slots, ranks, pairs, len(self.merges))

    def _bpe_waves(self, pieces: list[str], tail: int = WAVE_MIN) -> dict[str, bytes]:
        """{piece: _bpe(piece), packed}, all pieces at once in numpy: in each wave every piece
        merges every occurrence of its lowest-rank pair, leftmost first where they overlap.

        A pre-token needs a few merges of a few microseconds each in Python; here a wave is a
        dozen array operations over all of them, and only the pairs around a merge are looked up
        again. Pieces done leave the arrays; the last `tail` (the longest) are finished by _bpe."""
        _, _, merged, byte_ids, byte_pairs, _ = self._tables
        none = len(self.merges)
        data = list(map(str.encode, pieces))
        raw = np.frombuffer(b"".join(data), np.uint8)  # (N,) every piece's bytes
        sizes = np.fromiter(map(len, data), np.int64, len(data))  # (M,) tokens per piece
        known = byte_ids[raw] >= 0
        out = {}
        if not known.all():  # drop the bytes the vocab lacks
            sizes = np.bincount(np.repeat(np.arange(len(data)), sizes)[known], minlength=len(data))
            raw = raw[known]
            out = dict.fromkeys(compress(pieces, sizes == 0), b"")  # every byte dropped: no ids
        alive = np.flatnonzero(sizes)  # (M,) the pieces still merging, in order
        sizes = sizes[alive]
        ends = np.cumsum(sizes)
        tokens = byte_ids[raw]
        rank = np.append(byte_pairs[(raw[:-1].astype(np.int64) << 8) + raw[1:]], none)  # (N,)
        rank[ends - 1] = none  # a piece's last token starts no pair
        done_pieces, done_sizes, done_tokens = [], [], []  # per wave: the pieces done in it
        while len(alive) >= max(tail, 1):
            best = np.minimum.reduceat(rank, ends - sizes)  # (M,) each piece's lowest-rank pair
            done = best == none
            best[done] = -1  # so that no pair of a piece done is merged
            # the pairs to merge; a run of equal pairs (a, a) overlaps: every other one, leftmost
            best_here = np.repeat(best, sizes)  # (N,)
            hit = _every_other_in_runs(np.flatnonzero(rank == best_here))
            finished = best_here < 0  # (N,)
            done_pieces.append(alive[done])
            done_sizes.append(sizes[done])
            done_tokens.append(tokens[finished])
            tokens[hit] = merged[rank[hit]]
            keep = ~finished
            keep[hit + 1] = False
            # (N,) where each token is once the rest is gone, plus one
            kept = np.cumsum(keep, dtype=np.int32)
            at, ends = kept[hit] - 1, kept[ends - 1][~done]  # the merged tokens, the pieces' ends
            sizes, alive = np.diff(ends, prepend=0), alive[~done]
            tokens, rank = tokens[keep], rank[keep]
            changed = np.concatenate([at, at[at > 0] - 1])  # the pairs a new token is in
            rank[changed] = self._pair_ranks(tokens, changed)
            rank[ends - 1] = none
        # the pieces' ids, in the order they were done
        ids = _pack(np.concatenate(done_tokens or [tokens[:0]]))
        ends = np.cumsum(np.concatenate(done_sizes or [sizes[:0]]))
        done_pieces = np.concatenate(done_pieces or [alive[:0]]).tolist()
        out.update(zip(map(pieces.__getitem__, done_pieces), _cut(ids, ends)))
        out.update((pieces[k], _pack(self._bpe(pieces[k]))) for k in alive.tolist())
        return out

    def _bpe_many(self, pieces: list[str]) -> dict[str, bytes]:
        """{piece: its ids, packed} as _bpe gives them, fast: many short pieces together by
        _bpe_waves, a few by _bpe itself, long ones by _bpe_long."""
        long = {}
        if max(map(len, pieces), default=0) >= LONG_PIECE:  # rare; max() finds out in C
            long = {p: self._bpe_long(p) for p in pieces if len(p) >= LONG_PIECE}
            pieces = [p for p in pieces if len(p) < LONG_PIECE]
        if len(pieces) >= WAVE_MIN and self._tables is not None:
            ids = self._bpe_waves(pieces)
        else:
            ids = dict(zip(pieces, map(_pack, map(self._bpe, pieces))))
        ids.update(long)
        return ids

    def _bpe_long(self, piece: str) -> bytes:
        """_bpe(piece) packed, for a long pre-token, in O(n log n) or better.

        Between two bytes that no token holds side by side no merge can ever happen: the piece is
        cut there and its parts merge apart, short ones together by _bpe_waves (a run of random
        letters falls into parts of ~7). A part with no such cut goes to _bpe_waves alone if it
        repeats one or two characters ("=====", "-=-=": few waves then), else to _bpe_stitched
        if it is ASCII (random digits), or to _bpe_heap. (Not where the vocab lacks bytes: a
        dropped byte joins its neighbours.)"""
        tables = self._tables
        if tables is None or self.drop_missing_bytes:
            return _pack(self._bpe_heap(piece))
        if len(set(piece)) <= 2:
            return self._bpe_waves([piece], 0)[piece]
        data = piece.encode("utf-8")
        raw = np.frombuffer(data, np.uint8).astype(np.int64)
        # cut before byte j if (j - 1, j) is in no token and a character starts at j
        cut = ~tables[5][raw[:-1] << 8 | raw[1:]] & ((raw[1:] & 0xC0) != 0x80)
        cuts = (np.flatnonzero(cut) + 1).tolist()
        if not cuts:  # (random digits: every two digits lie side by side in some token)
            return _pack(self._bpe_stitched(piece) if piece.isascii() else self._bpe_heap(piece))
        slices = map(slice, [0, *cuts], [*cuts, len(data)])
        parts = list(map(bytes.decode, map(data.__getitem__, slices)))
        ids = self._bpe_many(list(set(parts)))
        return b"".join(map(ids.__getitem__, parts))

    # Why _bpe_stitched is exact. Say tokens a, b join if _bpe(a's text + b's text) == (a, b).
    # (1) Any run of adjacent tokens of _bpe(text) is _bpe of its own text: the run's edges stay
    # edges throughout, and each merge inside it was the lowest-rank pair (leftmost first) of the
    # whole text, so also of the run. In particular every two adjacent tokens of _bpe(text) join.
    # (2) Conversely, tokens t1..tk (k >= 2) that spell text, each two adjacent ones joining, are
    # _bpe(text). Suppose _bpe(text)'s merges first cross an edge between ti and ti+1; until then
    # its merges inside ti ti+1 are exactly those _bpe(ti's text + ti+1's) makes, in that order
    # (as in (1)), so that one crosses the edge too: ti, ti+1 would not join. So no merge crosses
    # an edge, and by (1) the tokens inside ti's text are _bpe(ti's text), which is (ti,) as ti
    # joins its neighbour. Hence chunks merged apart and glued where the tokens join are _bpe's.
    def _bpe_stitched(self, piece: str) -> tuple[int, ...]:
        """_bpe(piece) for a long ASCII pre-token without cuts (see _bpe_long), in about O(n).

        Chunks of STITCH characters merge apart, all together by _bpe_waves; then each is glued
        to the tokens before it where they join, the few tokens around a glue re-merged until
        they do (see above why that is exact)."""
        chunks = [piece[i:i + STITCH] for i in range(0, len(piece), STITCH)]
        ids = {c: _unpack(b) for c, b in self._bpe_many(list(set(chunks))).items()}
        # Ahead of gluing, all together: re-merge the two tokens where two chunks meet (most do
        # not join), then each result with the token on either side, as _glue will ask.
        meets = [(ids[a], ids[b]) for a, b in zip(chunks, chunks[1:])]
        self._remerge_all({(x[-1], y[0]) for x, y in meets})
        middles = [self._remerged[x[-1], y[0]] for x, y in meets]
        self._remerge_all({pair for (x, y), mid in zip(meets, middles)
                           for pair in ((*x[-2:-1], mid[0]), (mid[-1], *y[1:2]))})
        out = list(ids[chunks[0]])
        for chunk in chunks[1:]:
            self._glue(out, ids[chunk])
        return tuple(out)

    def _glue(self, left: list[int], right: tuple[int, ...]) -> None:
        """Append to left (_bpe of some ASCII text) right (_bpe of the next), so that left becomes
        _bpe of both texts: re-merge its last k tokens with right's first m, more of them on a side
        whose outer pair does not join, until both do."""
        n, k, m, middle = len(left), 0, 0, ()
        while True:
            ok_left = k == n or self._joins(left[n - k - 1], (middle or right)[0])
            ok_right = m == len(right) or self._joins((middle or left)[-1], right[m])
            if ok_left and ok_right:
                left[n - k:] = middle + right[m:]
                return
            k = k if ok_left else min(n, 2 * k + 1)
            m = m if ok_right else min(len(right), 2 * m + 1)
            middle = self._remerge((*left[n - k:], *right[:m]))

    def _joins(self, a: int, b: int) -> bool:
        """Whether tokens a, b join: _bpe of their texts together is (a, b)."""
        return self._remerge((a, b)) == (a, b)

    def _remerge(self, ids: tuple[int, ...]) -> tuple[int, ...]:
        """_bpe of the text ids spell (ASCII), remembered: gluing asks about the same few pairs of
        tokens again and again."""
        if ids not in self._remerged:
            self._remerge_all([ids])
        return self._remerged[ids]

    def _remerge_all(self, seqs: Iterable[tuple[int, ...]]) -> None:
        """Remember _bpe of the text each sequence of ids spells (ASCII), many by _bpe_waves, in
        a bounded dict (up to CACHE_SIZE: emptied when full, then all of seqs remerged, as the
        caller reads them all back)."""
        seqs = set(seqs)
        new = seqs.difference(self._remerged)
        if len(self._remerged) + len(new) > CACHE_SIZE:
            self._remerged.clear()
            new = seqs
        new = list(new)
        texts = [b"".join(map(self.vocab.__getitem__, ids)).decode("ascii") for ids in new]
        merged = self._bpe_many(list(set(texts)))
        self._remerged.update(zip(new, map(_unpack, map(merged.__getitem__, texts))))

    def _remember(self, pieces: set[str]) -> dict[str, bytes]:
        """The pre-token cache, after adding the ids of those of pieces it lacks.

        Bounded in two generations: when the young dict would pass CACHE_SIZE it becomes the old
        one (the old one is dropped), and a piece met again comes back from there. So the words in
        use stay, memory stays flat on endless text, and nothing is ever recomputed all at once.
        (Set operations and dict updates: loops in C.)"""
        cache = self._cache
        new = pieces.difference(cache)
        if len(cache) + len(new) > CACHE_SIZE:
            self._old_cache, cache = cache, {}
            self._cache, new = cache, pieces
        for known in (self._old_cache, self._whole):  # met before the last turn; whole tokens
            found = known.keys() & new  # walks the smaller of the two
            cache.update(zip(found, map(known.__getitem__, found)))
        cache.update(self._bpe_many(list(new.difference(cache))))
        return cache

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of text, special tokens in it treated as plain text."""
        return np.frombuffer(self._packed(text), np.uint32).tolist()

    def _packed(self, text: str) -> bytes:
        """encode_ordinary(text), packed (see _pack)."""
        if self.normalizer:
            text = unicodedata.normalize(self.normalizer, text)
        pieces = pretokenize(text, self.pattern)
        try:  # every piece met lately: one pass in C
            return _joined(self._cache, pieces)
        except KeyError:
            return _joined(self._remember(set(pieces)), pieces)

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """The ids of text, with tiktoken's rules for special tokens in it:
        "none_raise" (default): raise if one is present; "none": encode them as plain text;
        "all": each becomes its id; a set of names: those become ids, any other one present raises.
        Nothing is added around the text (no BOS): Hugging Face's add_special_tokens=False."""
        return self.encode_to_numpy(text, allowed_special).tolist()

    def encode_to_numpy(self, text: str, allowed_special="none_raise") -> np.ndarray:
        """encode(text, allowed_special) as a uint32 array, as tiktoken's encode_to_numpy: data
        preparation writes arrays, and this way the ids never become Python ints."""
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special in ("none", "none_raise"):
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special names unknown special token(s) "
                                 f"{sorted(unknown)}; this tokenizer has "
                                 f"{sorted(self.special_tokens)}")
        else:
            raise ValueError(f"allowed_special={allowed_special!r}; use 'all', 'none', "
                             "'none_raise' or a set")
        if self._special_re is None or allowed_special == "none":
            return np.frombuffer(self._packed(text), np.uint32)
        matches = list(self._special_re.finditer(text))
        for m in matches:
            if m.group() not in allowed:
                raise ValueError(f"the text contains the special token {m.group()!r} at character "
                                 f"{m.start()}; pass allowed_special='all' (or a set naming it) to "
                                 "encode it as one token, or 'none' to encode it as plain text")
        out, start = [], 0
        for m in matches:
            out.append(self._packed(text[start:m.start()]))
            out.append(_pack([self.special_tokens[m.group()]]))
            start = m.end()
        out.append(self._packed(text[start:]))
        return np.frombuffer(b"".join(out), np.uint32)

    def encode_iterable(self, lines: Iterable[str], allowed_special="none_raise",
                        buffer_chars: int = 1 << 18) -> Iterator[int]:
        """Yield the ids of encode("".join(lines)) lazily, holding about `buffer_chars` of text.

        Text is buffered and cut only where the split pattern cuts anyway (see _safe_cut), so the
        ids are exactly encode()'s; with the bounded pre-token cache, memory stays flat. (The ids
        come through chain(), in C: a generator yielding each id would cost a tenth of the time.)"""
        chunks = self._safe_chunks(lines, buffer_chars)
        return chain.from_iterable(self.encode(chunk, allowed_special) for chunk in chunks)

    def _safe_chunks(self, lines: Iterable[str], buffer_chars: int) -> Iterator[str]:
        """The text of lines in pieces of about buffer_chars or more, each ending at a safe cut.

        A text file is read in blocks of 64k characters: quicker than line by line."""
        if hasattr(lines, "read"):
            lines = iter(partial(lines.read, 1 << 16), "")
        parts, size, threshold = [], 0, buffer_chars
        for line in lines:
            parts.append(line)
            size += len(line)
            if size >= threshold:
                buf = "".join(parts)
                cut = self._safe_cut(buf)
                if cut:
                    yield buf[:cut]
                    parts, size, threshold = [buf[cut:]], size - cut, buffer_chars
                else:  # no safe cut yet (one endless pre-token?): look again later
                    parts, threshold = [buf], 2 * size
        if size:
            yield "".join(parts)

    # A cut is safe before " <letter>" after a visible character, and at the start of a line that
    # follows a single '\n' after a visible character: GPT-2's, GPT-4's, Llama 3's and Qwen2's
    # patterns (and a digits step) end a pre-token there and never look back across it, so both
    # halves split exactly as the whole does. (A custom pattern may not.)
    _CUT_RE = regex.compile(r"(?<=[^\s]) (?=\p{L})|(?<=[^\s]\n)(?=[^\s])")

    def _safe_cut(self, text: str) -> int:
        """The last safe cut in text, or 0 if there is none.

        Not inside a special token and not in the last len(longest special) characters, where a
        special token may be only half read."""
        limit = len(text) - max(map(len, self.special_tokens), default=1)
        spans = [m.span() for m in self._special_re.finditer(text)] if self._special_re else []
        lo = limit
        while lo > 0:  # search backwards, 4096 characters at a time
            lo, hi = max(lo - 4096, 0), lo
            near = [(s, e) for s, e in spans if e > lo and s < hi]
            cuts = [m.start() for m in self._CUT_RE.finditer(text, lo, hi)
                    if not any(s < m.start() < e for s, e in near)]
            if cuts:
                return cuts[-1]
        return 0

    # -- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the ids, joined.

        Bytes, because a token may be half of a UTF-8 character: decode() makes text of them."""
        ids = list(ids)
        try:
            return b"".join(map(self.vocab.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in self.vocab)
            raise ValueError(f"cannot decode id {bad!r}: this tokenizer's ids are "
                             f"0..{self.n_vocab - 1} ({len(self.vocab)} in use); was it encoded "
                             "with another tokenizer?") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the ids; bytes that are not valid UTF-8 (a character cut in half) become
        U+FFFD, as tiktoken and Hugging Face do."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- saving and loading
    def dumps(self) -> str:
        """The model as UTF-8 text: a record per line, every token's bytes in base64, merges as ids,
        strings (patterns, special tokens, the chat template) as JSON.

        So any bytes and any string, spaces and newlines included, round-trip."""
        lines = [FORMAT_HEADER] + ["pattern " + json.dumps(p) for p in self.split_steps]
        lines.append(f"eot {json.dumps(self.eot_id)}")  # null: no end-of-text token
        if self.normalizer:
            lines.append(f"normalizer {json.dumps(self.normalizer)}")
        if self.ignore_merges:
            lines.append("ignore_merges true")
        if self.chat_template is not None:
            lines.append(f"chat_template {json.dumps(self.chat_template)}")
        if self.drop_missing_bytes:
            lines.append("drop_missing_bytes true")
        lines += [f"special {i} {json.dumps(s)}" for s, i in self.special_tokens.items()]
        specials = set(self.special_tokens.values())
        lines += [f"token {i} {base64.b64encode(v).decode()}" for i, v in self.vocab.items()
                  if i not in specials]
        lines += [f"merge {a} {b} {i}" for (a, b), i in self.merges.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def loads(cls, s: str, source: str = "the model text") -> Tokenizer:
        """The Tokenizer that dumps() wrote as s (this format, or the older one without options).

        `source` names the text in errors (a file's path)."""
        lines = s.split("\n")
        if lines[0] != FORMAT_HEADER and lines[0] not in OLD_HEADERS:
            raise ValueError(f"{source} is not a scratchgpt BPE model (first line "
                             f"{lines[0][:40]!r}, expected {FORMAT_HEADER!r}); give a file "
                             "written by Tokenizer.save / bpe.py train")
        patterns, specials, vocab, merges, options = [], {}, {}, {}, {}
        first = {}  # ("id", i), ("special", text) or ("merge", a, b) -> the line that gave it

        def once(key, what):  # a hand edit that repeats a line must not silently win
            if key in first:
                raise ValueError(f"{what} was already given at line {first[key]}")
            first[key] = n
        for n, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            try:
                kind, rest = line.split(" ", 1)
                if kind == "pattern":
                    patterns.append(json.loads(rest))
                elif kind == "special":
                    i, name = rest.split(" ", 1)
                    i, name = int(i), json.loads(name)
                    if not isinstance(name, str) or not name:
                        raise ValueError("a special token is a non-empty JSON string")
                    once(("special", name), f"special token {name!r}")
                    once(("id", i), f"id {i}")
                    specials[name] = i
                elif kind == "token":
                    i, b64 = rest.split(" ")
                    once(("id", int(i)), f"id {i}")
                    vocab[int(i)] = base64.b64decode(b64, validate=True)
                elif kind == "merge":
                    a, b, i = map(int, rest.split(" "))
                    once(("merge", a, b), f"merge {a} {b}")
                    merges[(a, b)] = i
                elif kind in ("eot", "normalizer", "ignore_merges", "chat_template",
                              "drop_missing_bytes"):
                    options[kind] = json.loads(rest)
                else:
                    raise ValueError(f"unknown record {kind!r}")
            except ValueError as e:  # also binascii.Error and JSONDecodeError, both ValueErrors
                raise ValueError(f"{source} is corrupt at line {n} ({line[:60]!r}): {e}; "
                                 "fix that line, or save the tokenizer again") from None
        if not patterns:
            raise ValueError(f"{source} is corrupt: it has no 'pattern' line; save the tokenizer "
                             "again")
        # ids may leave gaps (a Hugging Face vocab can), but the largest one sets n_vocab, the
        # model's embedding size: one past twice the tokens given is a typo, not a gap
        top = max(vocab.keys() | specials.values(), default=0)
        if top >= 2 * (len(vocab) + len(specials)):
            raise ValueError(f"{source} is corrupt at line {first[('id', top)]}: id {top} is far "
                             f"beyond its {len(vocab) + len(specials)} tokens; fix that id")
        try:
            tok = cls(merges, vocab, specials, patterns, normalizer=options.get("normalizer"),
                      ignore_merges=bool(options.get("ignore_merges")),
                      chat_template=options.get("chat_template"),
                      drop_missing_bytes=bool(options.get("drop_missing_bytes")))
            if "eot" in options:  # null too: a tokenizer without an end-of-text token
                tok.eot_id = options["eot"]
        except ValueError as e:
            raise ValueError(f"{source} is corrupt: {e}") from None
        return tok

    def save(self, path) -> Path:
        """The model file, path/tokenizer.bpe, after writing it and path/vocab.txt (for humans).

        The pair is written as one unit (a fresh directory renamed into place): a crash never
        leaves half a tokenizer, nor a listing of another model. So path holds only these two."""
        model, listing = SAVED_FILES
        atomic_write_dir(path, {model: lambda f: f.write(self.dumps().encode("utf-8")),
                                listing: lambda f: f.write(self.vocab_listing().encode("utf-8"))})
        return Path(path) / model

    @classmethod
    def load(cls, path) -> Tokenizer:
        """The Tokenizer in a tokenizer.bpe file, or in a directory that holds one.

        What save() wrote; see load_tokenizer for other formats."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.bpe"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}; train one with `python bpe.py "
                                    "train ... --out DIR` (load_tokenizer also reads a "
                                    "tokenizer.json or a .gguf file)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a scratchgpt BPE model (not UTF-8 text); give a file "
                             "written by Tokenizer.save / bpe.py train") from None
        return cls.loads(text, source=str(path))

    def vocab_listing(self) -> str:
        """One line per id: the token as a JSON string (or b'...' if it is not valid UTF-8 on its
        own, like half a character), and the two tokens it was merged from."""
        made_of = {i: pair for pair, i in self.merges.items()}

        def show(i):
            t = readable(self.vocab[i])
            return json.dumps(t, ensure_ascii=False) if isinstance(t, str) else repr(t)
        lines = []
        for i in sorted(self.vocab):
            line = f"{i}\t{show(i)}"
            if i in made_of:
                line += f"\t= {show(made_of[i][0])} + {show(made_of[i][1])}"
            elif i in self.special_tokens.values():
                line += "\t(special)"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def to_hf_json(self) -> dict:
        """This tokenizer as a Hugging Face tokenizer.json (a dict to json.dump), same ids.

        So an exported model carries a tokenizer that `tokenizers` and transformers load. Tokens and
        merges are written in GPT-2's byte-level characters; special tokens as added tokens."""
        char = byte_level_chars()
        text = lambda token: "".join(char[b] for b in token)
        specials = {i: s for s, i in self.special_tokens.items()}
        # Special tokens are in the vocab as themselves too: else tokenizers gives them new ids.
        vocab = {specials.get(i) or text(v): i for i, v in sorted(self.vocab.items())}
        if len(vocab) < len(self.vocab):
            spelled = Counter(specials.get(i) or text(v) for i, v in self.vocab.items())
            twice = next(k for k, n in spelled.items() if n > 1)
            raise ValueError(f"{twice!r} is both a special token and a token's byte-level "
                             "spelling; tokenizer.json holds it once: rename the special token")
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, s in sorted(specials.items())]
        model = {"type": "BPE", "dropout": None, "unk_token": None,
                 "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                 "byte_fallback": False, "ignore_merges": self.ignore_merges, "vocab": vocab,
                 "merges": [[text(self.vocab[a]), text(self.vocab[b])] for a, b in self.merges]}
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                "normalizer": {"type": self.normalizer} if self.normalizer else None,
                "pre_tokenizer": _hf_pre_tokenizer(self.split_steps),
                "post_processor": None,
                "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                            "use_regex": True},
                "model": model}

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The ChatML text of a conversation, as this tokenizer's chat template writes it."""
        return "".join(text for text, _ in self.chat_pieces(messages, add_generation_prompt))

    def chat_pieces(self, messages: list[dict], add_generation_prompt: bool = True) -> list:
        """chat_pieces (below) of a conversation, with this tokenizer's default system message.

        The template itself is never run: we write ChatML, with the default system message the
        template holds (SmolLM2's), after checking that the template is ChatML."""
        for name in (CHATML_START, CHATML_END):
            if name not in self.special_tokens:
                raise ValueError(f"this tokenizer has no special token {name}: it does not speak "
                                 "ChatML, the only chat format render_chat writes")
        template = self.chat_template
        if template is not None and CHATML_START not in template:
            raise ValueError(f"this tokenizer's chat template is not ChatML (it never writes "
                             f"{CHATML_START}); render_chat writes only ChatML")
        return chat_pieces(messages, add_generation_prompt, chatml_default_system(template or ""))


def readable(token: bytes) -> str | bytes:
    """A token as text if it is valid UTF-8 on its own, else as bytes.

    Bytes for half of a multi-byte character, which no text can show."""
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        return token


# ----------------------------------------------------------------------------- GPT-2
def gpt2_ranks_path() -> Path:
    """Where the GPT-2 rank table is cached: $SCRATCHGPT_CACHE or ~/.cache/scratchgpt."""
    return cache_dir() / "gpt2.tiktoken"


def _check_sha256(data: bytes, source: str) -> bytes:
    """data, once its sha256 is GPT-2's rank table's.

    A truncated or foreign file fails here, not as wrong ids later."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != GPT2_RANKS_SHA256:
        raise ValueError(f"{source} has sha256 {digest}, not GPT-2's {GPT2_RANKS_SHA256}; delete "
                         f"it and {INSTALL_HINT}")
    return data


def download_gpt2() -> Path:
    """The cached path of GPT-2's rank table, fetched once and its sha256 verified.

    tiktoken's own download first, else the PyPI sdist of openai-whisper (which ships the same
    file): a machine with PyPI only still installs."""
    path = gpt2_ranks_path()
    if path.is_file():
        _check_sha256(path.read_bytes(), str(path))
        print(f"GPT-2 ranks already cached at {path}")
        return path
    try:
        data = tiktoken.load.read_file_cached(GPT2_RANKS_URL, GPT2_RANKS_SHA256)
        print(f"downloaded GPT-2 ranks with tiktoken from {GPT2_RANKS_URL}")
    except Exception as e:  # any network failure: say so, then use the second source
        print(f"tiktoken could not download {GPT2_RANKS_URL} ({type(e).__name__}); trying PyPI "
              f"{GPT2_RANKS_SDIST[1]}")
        data = _gpt2_ranks_from_pypi()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _check_sha256(data, "the downloaded GPT-2 rank file")
    atomic_write(path, lambda f: f.write(data))
    print(f"GPT-2 ranks cached at {path} (sha256 verified)")
    return path


def _gpt2_ranks_from_pypi() -> bytes:
    """The rank table's bytes from the openai-whisper sdist on PyPI (pinned by its sha256).

    The second source, for machines that reach PyPI and nothing else."""
    try:
        [(_, data)] = archive_files(pypi_file(*GPT2_RANKS_SDIST), "*/whisper/assets/gpt2.tiktoken")
    except ValueError as e:
        raise ValueError(f"{e}; check the network, or copy a gpt2.tiktoken with sha256 "
                         f"{GPT2_RANKS_SHA256} to {gpt2_ranks_path()}") from None
    return data


def _rank_bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """The parts tiktoken's BPE leaves of token's bytes, using only ranks < max_rank.

    It merges the adjacent parts whose concatenation has the lowest rank, until none is left."""
    parts = [bytes([b]) for b in token]
    while True:
        best, best_rank = None, max_rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best is None:
            return parts
        parts[best:best + 2] = [parts[best] + parts[best + 1]]


def _gpt2_merges(vocab: dict[int, bytes]) -> dict[tuple[int, int], int]:
    """GPT-2's merges {(id_a, id_b): new id}, from its rank table's vocab {id: bytes}.

    The table maps each token's bytes to its id; the merge that made token t is found by running
    BPE on t's bytes with only the tokens before t: it stops at exactly two parts, the merge.
    (~1 s: gpt2_tokenizer keeps the result in the cache, see gpt2_merges_path.)"""
    ranks = {token: i for i, token in vocab.items()}
    merges = {}
    for i in range(256, len(vocab)):  # the multi-byte tokens, in rank order
        a, b = _rank_bpe(ranks, vocab[i], i)
        merges[(ranks[a], ranks[b])] = i
    return merges


def gpt2_merges_path() -> Path:
    """Where GPT-2's merges, derived once from the rank table, are cached (pinned by sha256)."""
    return cache_dir() / "gpt2.merges.i32"


def _cached_gpt2_merges(vocab: dict[int, bytes]) -> dict[tuple[int, int], int]:
    """_gpt2_merges(vocab), read from its cache file when that is GPT-2's (its sha256 is pinned),
    else derived and written there: building GPT-2's tokenizer then takes ~0.1 s, not ~1 s.

    The file is a, b per merge as little-endian int32, the merges making tokens 256, 257, ...;
    a foreign or damaged one is derived again, an unwritable cache only costs the time."""
    path = gpt2_merges_path()
    data = path.read_bytes() if path.is_file() else b""
    if hashlib.sha256(data).hexdigest() == GPT2_MERGES_SHA256:
        ids = iter(np.frombuffer(data, "<i4").tolist())
        return dict(zip(zip(ids, ids), range(256, 256 + len(data) // 8)))
    merges = _gpt2_merges(vocab)
    data = np.array(list(merges), "<i4").tobytes()
    if hashlib.sha256(data).hexdigest() == GPT2_MERGES_SHA256:
        try:
            atomic_write(path, lambda f: f.write(data))
        except (OSError, ValueError):  # a read-only or full cache: derive again next time
            pass
    return merges


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's tokenizer, ids identical to tiktoken's "gpt2", from the cached rank table.

    Its merges are derived from the table (see _gpt2_merges), once: then they are cached too."""
    path = gpt2_ranks_path()
    if not path.is_file():
        raise FileNotFoundError(f"GPT-2 rank table not found at {path}; {INSTALL_HINT}")
    words = _check_sha256(path.read_bytes(), str(path)).split()  # token in base64, id, ...
    vocab = dict(zip(map(int, words[1::2]), map(binascii.a2b_base64, words[::2])))
    return Tokenizer(_cached_gpt2_merges(vocab), vocab, {GPT2_EOT: 50256}, GPT2_SPLIT_PATTERN,
                     learned=True)


# ----------------------------------------------------------------------------- real tokenizers
# A GGUF file names its pre-tokenizer (tokenizer.ggml.pre) but does not store it: the name stands
# for these rules, as llama.cpp's llama-vocab.cpp reads them: {name: (split steps, ignore_merges)}.
GGUF_PRE = {
    "gpt2": (GPT2_SPLIT_PATTERN, False),
    "smollm": ((DIGITS_SPLIT, GPT2_SPLIT_PATTERN), False),  # every digit alone, then GPT-2's
    "llama-bpe": (LLAMA3_SPLIT_PATTERN, True),  # Llama 3: a whole token wins before any merge
    "llama3": (LLAMA3_SPLIT_PATTERN, True),
    "llama-v3": (LLAMA3_SPLIT_PATTERN, True),
    "qwen2": (QWEN2_SPLIT_PATTERN, False),
}
GGUF_SPECIAL_TYPES = (3, 4)  # tokenizer.ggml.token_type: control and user-defined tokens


def _byte_level_tokenizer(tokens: dict[int, str], merges: list, specials: dict[str, int],
                          source: str, **options) -> Tokenizer:
    """A Tokenizer from tokens {id: text} and merges ("a b" or [a, b]) written in byte-level
    characters (see byte_level_chars), and special tokens as plain text.

    tokenizer.json and GGUF files both write a BPE vocab this way; `options` go to Tokenizer."""
    to_byte = {c: b for b, c in byte_level_chars().items()}

    def to_bytes(token: str) -> bytes:
        try:
            return bytes(map(to_byte.__getitem__, token))
        except KeyError:
            raise ValueError(f"{source}: token {token!r} is not written in GPT-2's byte-level "
                             "characters; only byte-level BPE tokenizers load here") from None
    pairs = []
    for m in merges:
        pair = m.split(" ") if isinstance(m, str) else m
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{source}: merge {m!r} is not a pair of tokens ('a b' or [a, b])")
        pairs.append((to_bytes(pair[0]), to_bytes(pair[1])))
    vocab = {i: to_bytes(t) for i, t in tokens.items()}
    try:
        return Tokenizer(pairs, vocab, specials, **options)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def from_hf_json(spec: dict, source: str = "tokenizer.json", eos_token: str | None = None,
                 chat_template: str | None = None) -> Tokenizer:
    """The Tokenizer a parsed Hugging Face tokenizer.json describes, ids equal to Hugging Face's.

    Every setting that changes ids is either done exactly or a ValueError naming it. eos_token
    (from tokenizer_config.json) sets eot_id; Hugging Face's post-processor (a BOS it adds) is
    not applied: encode() is its add_special_tokens=False."""
    model = spec.get("model") if isinstance(spec, dict) else None
    kind = model.get("type") if isinstance(model, dict) else None
    if kind != "BPE":
        raise ValueError(f"{source}: model.type is {kind!r}; only byte-level BPE (\"BPE\") loads "
                         "here (a WordPiece vocab.txt loads in wordpiece.py)")
    for field in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"):
        if model.get(field):  # each changes the ids
            raise ValueError(f"{source}: model.{field}={model[field]!r} is not supported; only "
                             "plain byte-level BPE loads here")
    pattern = _hf_split_steps(spec.get("pre_tokenizer"), source)
    normalizer = (spec.get("normalizer") or {}).get("type")
    if normalizer not in (None, *NORMALIZERS):
        raise ValueError(f"{source}: normalizer {normalizer!r} is not supported (only "
                         f"{', '.join(NORMALIZERS)} or none)")
    specials = _hf_added_tokens(spec.get("added_tokens") or [], source)
    vocab = model.get("vocab") or {}
    eot_id = specials.get(eos_token, vocab.get(eos_token))
    if eos_token is not None and eot_id is None:
        raise ValueError(f"{source}: the eos_token {eos_token!r} of tokenizer_config.json is not "
                         "one of its tokens; fix tokenizer_config.json")
    ids = set(specials.values())
    tokens = {i: t for t, i in vocab.items() if i not in ids}
    return _byte_level_tokenizer(tokens, model.get("merges") or [], specials, source,
                                 pattern=pattern, ignore_merges=bool(model.get("ignore_merges")),
                                 normalizer=normalizer, eot_id=eot_id, chat_template=chat_template,
                                 drop_missing_bytes=model.get("unk_token") is None)


def _hf_added_tokens(added: list[dict], source: str) -> dict[str, int]:
    """{text: id} of tokenizer.json's added tokens: all become our special tokens.

    Hugging Face cuts every added token out of the text before anything else, as we do with
    special tokens (special=false ones too). Flags that change where one matches are refused."""
    specials = {}
    for t in added:
        for flag in ("single_word", "lstrip", "rstrip"):
            if t.get(flag):
                raise ValueError(f"{source}: added token {t.get('content')!r} has {flag}=true, "
                                 "which is not supported (it changes where the token matches)")
        specials[t["content"]] = t["id"]
    return specials


def _hf_split_steps(pre: dict | None, source: str) -> Split:
    """Our split steps for a tokenizer.json pre_tokenizer: its Split and Digits steps, in order,
    then the ByteLevel that ends it, whose use_regex=true is one more step (GPT-2's regex).

    The shapes of GPT-2 (ByteLevel), Llama 3 and Qwen2 (Split, ByteLevel), SmolLM2 (Digits,
    ByteLevel). Anything else is a ValueError naming it."""
    steps = (pre.get("pretokenizers") or []) if pre and pre.get("type") == "Sequence" else [pre]
    last = steps[-1] if steps and isinstance(steps[-1], dict) else {}
    if last.get("type") != "ByteLevel":
        raise ValueError(f"{source}: pre_tokenizer {json.dumps(pre)[:80]} does not end with "
                         "ByteLevel; only byte-level BPE tokenizers load here")
    if last.get("add_prefix_space"):
        raise ValueError(f"{source}: pre_tokenizer ByteLevel add_prefix_space=true is not "
                         "supported (it puts a space before the text)")
    patterns = [_hf_split_step(step, source) for step in steps[:-1]]
    if last.get("use_regex", True):
        patterns.append(GPT2_SPLIT_PATTERN)
    if not patterns:
        raise ValueError(f"{source}: pre_tokenizer splits nothing (ByteLevel use_regex=false "
                         "alone); each text would be one pre-token: not supported")
    return patterns[0] if len(patterns) == 1 else tuple(patterns)


def _hf_split_step(step: dict, source: str) -> str:
    """The regex of one Split or Digits pre-tokenizer step.

    Split must isolate its matches (behavior Isolated, invert false): the rule pretokenize keeps."""
    kind = step.get("type") if isinstance(step, dict) else None
    if kind == "Digits":  # Rust's char::is_numeric is \p{N}; runs together, or each alone
        return DIGITS_SPLIT if step.get("individual_digits") else r"\p{N}+"
    if kind != "Split":
        raise ValueError(f"{source}: pre_tokenizer step {kind!r} is not supported (only Split, "
                         "Digits, then ByteLevel)")
    if step.get("behavior") != "Isolated" or step.get("invert"):
        raise ValueError(f"{source}: pre_tokenizer Split with behavior={step.get('behavior')!r}, "
                         f"invert={step.get('invert')!r} is not supported (only Isolated, false)")
    pattern = step.get("pattern") or {}
    if "Regex" in pattern:
        return pattern["Regex"]
    if "String" in pattern:
        return regex.escape(pattern["String"])
    raise ValueError(f"{source}: pre_tokenizer Split pattern {pattern!r} has neither Regex nor "
                     "String")


def _hf_pre_tokenizer(steps: tuple[str, ...]) -> dict:
    """The tokenizer.json pre_tokenizer for our split steps, the inverse of _hf_split_steps.

    Each step is a Split (Digits for DIGITS_SPLIT); a last GPT-2 regex is ByteLevel's own."""
    *firsts, last = steps
    hf = [_hf_split(p) for p in firsts]
    if last != GPT2_SPLIT_PATTERN:
        hf.append(_hf_split(last))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": last == GPT2_SPLIT_PATTERN}
    return {"type": "Sequence", "pretokenizers": hf + [byte_level]} if hf else byte_level


def _hf_split(pattern: str) -> dict:
    r"""One tokenizer.json Split step (or Digits) that splits as pattern does.

    `tokenizers` runs Oniguruma, which reads `{1,3}+` as a repeat of `{1,3}`, not as possessive:
    GPT-4's `\p{N}{1,3}+` ends its alternative, where a greedy `{1,3}` cannot backtrack either,
    so it is written greedy. Another possessive `{m,n}+` is a ValueError: it would split apart."""
    if pattern == DIGITS_SPLIT:
        return {"type": "Digits", "individual_digits": True}
    onig = pattern.replace(r"|\p{N}{1,3}+|", r"|\p{N}{1,3}|")
    if regex.search(r"\{\d+(?:,\d*)?\}\+", onig):
        raise ValueError(f"split pattern {pattern!r} has a possessive {{m,n}}+, which tokenizers' "
                         "regex engine reads as a repeat; spell it without one to export it")
    return {"type": "Split", "pattern": {"Regex": onig}, "behavior": "Isolated", "invert": False}


def _read_json(path: Path, what: str):
    """The parsed JSON of a file; errors name the file."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({e})") from None


def load_tokenizer_json(path) -> Tokenizer:
    """The Tokenizer of a Hugging Face tokenizer.json file, or of a directory holding one.

    A tokenizer_config.json beside it gives the eos token (eot_id) and the chat template (or a
    chat_template.jinja file does, where newer transformers save it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    spec = _read_json(path, "tokenizer.json")
    config_path = path.parent / "tokenizer_config.json"
    config = _read_json(config_path, "tokenizer_config.json") if config_path.is_file() else {}
    eos = config.get("eos_token")
    if isinstance(eos, dict):  # written as an AddedToken
        eos = eos.get("content")
    template = config.get("chat_template")
    if isinstance(template, list):  # several named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    jinja = path.parent / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = read_text(jinja, "chat template")
    return from_hf_json(spec, str(path), eos, template)


def load_gguf_tokenizer(path) -> Tokenizer:
    """The Tokenizer inside a GGUF model file, ids equal to llama.cpp's.

    GGUF stores the tokens, merges and token types and names its pre-tokenizer; GGUF_PRE says
    what the name means. Control and user-defined tokens are special. Needs the gguf package."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ImportError(f"reading {path} needs the gguf package: pip install gguf") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist or is not a file")
    try:
        fields = GGUFReader(path).fields
    except (ValueError, OSError) as e:
        raise ValueError(f"{path} is not a GGUF file the gguf package can read ({e})") from None
    value = lambda key, default=None: fields[key].contents() if key in fields else default
    model, pre = value("tokenizer.ggml.model"), value("tokenizer.ggml.pre")
    if model != "gpt2":
        kind = "a sentencepiece tokenizer" if model == "llama" else "not byte-level BPE"
        raise ValueError(f"{path}: tokenizer.ggml.model is {model!r} ({kind}); only 'gpt2' "
                         "(byte-level BPE) loads here")
    if pre not in GGUF_PRE:
        raise ValueError(f"{path}: tokenizer.ggml.pre {pre!r} is not in bpe.GGUF_PRE "
                         f"({', '.join(GGUF_PRE)}); add its split rules there, from llama.cpp")
    pattern, ignore_merges = GGUF_PRE[pre]
    tokens = value("tokenizer.ggml.tokens", [])
    types = value("tokenizer.ggml.token_type", [1] * len(tokens))
    specials = {t: i for i, (t, kind) in enumerate(zip(tokens, types))
                if kind in GGUF_SPECIAL_TYPES}
    ids = set(specials.values())
    normal = {i: t for i, t in enumerate(tokens) if i not in ids}
    return _byte_level_tokenizer(normal, value("tokenizer.ggml.merges", []), specials, str(path),
                                 pattern=pattern, ignore_merges=ignore_merges,
                                 eot_id=value("tokenizer.ggml.eos_token_id"),
                                 chat_template=value("tokenizer.chat_template"),
                                 drop_missing_bytes=True)


def load_tokenizer(spec: str | os.PathLike) -> Tokenizer:
    """The tokenizer spec names: "gpt2", a bpe.py model (a directory or .bpe file), a Hugging Face
    tokenizer.json (or a directory holding one), or a .gguf model file.

    One entry point for every script's --model / --tokenizer flag."""
    if spec == "gpt2":
        return gpt2_tokenizer()
    path = Path(spec)
    if path.suffix == ".gguf":
        return load_gguf_tokenizer(path)
    hf_dir = path.is_dir() and not (path / "tokenizer.bpe").is_file()
    if path.suffix == ".json" or (hf_dir and (path / "tokenizer.json").is_file()):
        return load_tokenizer_json(path)
    return Tokenizer.load(path)


# ----------------------------------------------------------------------------- chat
CHATML_START, CHATML_END = "<|im_start|>", "<|im_end|>"


def render_chat(messages: list[dict], add_generation_prompt: bool = True,
                default_system: str | None = None) -> str:
    """The ChatML text of a conversation: "<|im_start|>{role}\\n{content}<|im_end|>\\n" per
    message, then "<|im_start|>assistant\\n", which asks for the reply (add_generation_prompt)."""
    return "".join(text for text, _ in chat_pieces(messages, add_generation_prompt, default_system))


def chat_pieces(messages: list[dict], add_generation_prompt: bool = True,
                default_system: str | None = None) -> list[tuple[str, bool]]:
    """render_chat's text as [(text, is_marker)]: the format's own markers apart from the text
    around them, so that encode_pieces makes only those control tokens, never a user's text.

    default_system, if given, is put first as a system message when the first message is not one,
    as SmolLM2's template does (Tokenizer.render_chat finds it in the tokenizer's template)."""
    if not messages:
        raise ValueError("render_chat got no messages; give at least one {'role', 'content'}")
    for n, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise ValueError(f"message #{n} ({str(m)[:60]}): give a dict with a 'role' and a "
                             "'content', both strings")
    if default_system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}, *messages]
    pieces = []
    for m in messages:
        pieces += [(CHATML_START, True), (f"{m['role']}\n{m['content']}", False),
                   (CHATML_END, True), ("\n", False)]
    if add_generation_prompt:
        pieces += [(CHATML_START, True), ("assistant\n", False)]
    return pieces


def qa_pieces(question: str) -> list[tuple[str, bool]]:
    """files.qa_prompt(question) as [(text, is_marker)]: the Q/A format's markers and the text."""
    return [(QUESTION, True), (f"\n{question}\n", False), (ANSWER, True), ("\n", False)]


def encode_pieces(tok, pieces: list[tuple[str, bool]]) -> list[int]:
    """The ids of [(text, is_marker)]: a marker is its special token's id (plain text for a
    tokenizer without it, as GPT-2's <|question|>), and text is always ordinary text, so a question
    that contains "<|endoftext|>" cannot end the row. The prompt is built by concatenating the
    pieces' ids: the learned answer never depends on finding a template inside the tokens."""
    ids = []
    for text, marker in pieces:
        special = tok.special_tokens.get(text) if marker else None
        ids += [special] if special is not None else tok.encode_ordinary(text)
    return ids


TEMPLATES = ("qa", "chat")


def prompt_ids(tok, question: str, template: str = "qa") -> list[int]:
    """The ids a model reads before its answer to question: the Q/A markers (sft.py's default
    format) or the tokenizer's chat template (one user turn), the question always as text."""
    if template == "chat":
        if not isinstance(tok, Tokenizer):
            raise ValueError("template=chat needs a tokenizer with a chat template (ChatML), not "
                             "a character-level one: use template=qa")
        return encode_pieces(tok, tok.chat_pieces([{"role": "user", "content": question}]))
    if template != "qa":
        raise ValueError(f"template={template!r}: expected one of {', '.join(TEMPLATES)}")
    return encode_pieces(tok, qa_pieces(question))


def chatml_default_system(template: str) -> str | None:
    """The system message a ChatML template adds to a conversation that opens without one, or None.

    SmolLM2's template writes it as one literal, '<|im_start|>system\\n...<|im_end|>\\n', under
    `if ... messages[0]['role'] != 'system'`; a template without both adds nothing we can say."""
    m = re.search(r"'<\|im_start\|>system\n([^']*)<\|im_end\|>\n'", template)
    if m is None or "messages[0]['role'] != 'system'" not in template:
        return None
    return m.group(1)


# ----------------------------------------------------------------------------- tokenizer specs
class CharTokenizer:
    """nanoGPT's character-level tokenizer (shakespeare_char): one id per character of `chars`,
    with the encode / decode / n_vocab / eot_id interface of Tokenizer, so every script takes
    either."""

    def __init__(self, chars: str):
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.n_vocab = len(chars)
        self.eot_id = None  # no end-of-text character
        self.special_tokens = {}  # none: every character is text

    def encode(self, text: str, allowed_special=()) -> list[int]:
        """One id per character of text.

        A character outside the vocabulary has no id: a ValueError names it."""
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"characters {unknown[:10]} are not in this model's character "
                             "vocabulary")
        return [self.stoi[ch] for ch in text]

    encode_ordinary = encode

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of the ids, joined."""
        return "".join(self.chars[i] for i in ids)


def tokenizer_from_spec(spec) -> Tokenizer | CharTokenizer:
    """The tokenizer a checkpoint or a dataset's metadata names.

    The spec is {"kind": "gpt2"} | {"kind": "char", "chars": "..."} |
    {"kind": "bpe", "model": Tokenizer.dumps()}."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "bpe":
        return Tokenizer.loads(spec["model"])
    if kind == "char":
        return CharTokenizer(spec["chars"])
    raise ValueError(f"tokenizer spec {str(spec)[:80]!r}: expected a dict with kind gpt2, char or "
                     "bpe")


def tokenizer_spec(tok: Tokenizer | CharTokenizer) -> dict:
    """The spec to store with a checkpoint (tokenizer_from_spec reads it).

    GPT-2's by name, any other in full, so that the checkpoint alone restores its tokenizer."""
    if isinstance(tok, CharTokenizer):
        return {"kind": "char", "chars": tok.chars}
    if tok.n_vocab == 50257 and tok.special_tokens == {GPT2_EOT: 50256}:  # cheap checks first
        gpt2 = gpt2_tokenizer()
        state = lambda t: (t.vocab, t.merges, t.pattern, t.eot_id, t.ignore_merges, t.normalizer,
                           t.chat_template, t.drop_missing_bytes)
        if state(tok) == state(gpt2):
            return {"kind": "gpt2"}
    return {"kind": "bpe", "model": tok.dumps()}


# ----------------------------------------------------------------------------- command line
def _fail(message) -> None:
    """Exit with status 1 after one `error: ...` line on stderr.

    One line the user can read, never a traceback, for every error a command meets."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _parse_ids(text: str) -> list[int]:
    """[15496, 995, 0] from "15496,995,0", or from "[15496, 995, 0]" as `encode` prints it.

    So `decode --ids` takes what `encode` printed."""
    try:
        return [int(x) for x in text.strip("[] ").split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--ids {text!r}: give token ids separated by commas, e.g. "
                         "--ids 15496,995,0") from None


def _arg_parser() -> argparse.ArgumentParser:
    """The command line: train, encode, decode, download-gpt2.

    Flags are snake_case, as in every other script of the project."""
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a BPE tokenizer on a text file")
    t.add_argument("--input", required=True, help="UTF-8 text file, any size")
    t.add_argument("--vocab_size", type=int, required=True,
                   help="256 bytes + merges + special tokens")
    t.add_argument("--special", action="append", default=[], help="a special token (repeatable)")
    t.add_argument("--out", required=True, help="directory for tokenizer.bpe and vocab.txt")
    t.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt2",
                   help="pre-tokenization regex")
    t.add_argument("--tie_break", choices=TIE_BREAKS, default="bytes")
    t.add_argument("--num_proc", type=int, default=os.cpu_count(),
                   help="pre-tokenization worker processes")
    model_help = ("'gpt2', a bpe.py model directory or .bpe file, a tokenizer.json (or its "
                  "directory), or a .gguf file")
    e = sub.add_parser("encode", help="show the ids and pieces of a text")
    e.add_argument("--model", required=True, help=model_help)
    text = e.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text (special tokens in it become their ids)")
    text.add_argument("--file", help="a UTF-8 text file to encode instead of --text")
    d = sub.add_parser("decode", help="show the text of ids")
    d.add_argument("--model", required=True, help=model_help)
    d.add_argument("--ids", required=True, help="ids separated by commas, e.g. 15496,995,0")
    sub.add_parser("download-gpt2", help="fetch and cache GPT-2's rank table (part of the install)")
    return parser


def main(argv=None) -> None:
    """Run one command; any error is one `error: ...` line on stderr and exit status 1.

    See _arg_parser for the commands, README.md for examples."""
    args = _arg_parser().parse_args(argv)
    try:
        if args.cmd == "train":
            check_dir_for(args.out, SAVED_FILES)  # before the training, not after it
            tok = train_bpe(Path(args.input), args.vocab_size, args.special,
                            PATTERNS[args.pattern], args.tie_break, args.num_proc, progress=True)
            print(f"trained {len(tok.merges)} merges, vocab {len(tok.vocab)}; wrote "
                  f"{tok.save(args.out)}")
        elif args.cmd == "encode":
            tok = load_tokenizer(args.model)
            text = args.text if args.file is None else read_text(args.file, "--file")
            ids = tok.encode(text, allowed_special="all")
            print(ids)
            print([readable(tok.vocab[i]) for i in ids])
        elif args.cmd == "decode":
            ids = _parse_ids(args.ids)
            print(load_tokenizer(args.model).decode(ids))
        else:
            download_gpt2()
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as err:
        _fail(err)


if __name__ == "__main__":
    with quiet_broken_pipe():
        main()
