"""Byte-level BPE by hand: the algorithm, a fast trainer, and GPT-2's exact tokenizer.

Read top to bottom:
1. the teaching core: `get_stats` counts adjacent pairs, `merge` replaces a pair by a new id;
2. `train_bpe_naive`: recount every pair after every merge (slow, obviously right: the reference);
3. `train_bpe`: the same merges, fast: count each distinct pre-token once, keep a pair -> words index and a
   heap, and after a merge touch only the words that contained the merged pair;
4. `Tokenizer`: encode / decode with tiktoken's semantics, save / load in a small text format;
5. GPT-2: download and verify its rank table, rebuild its 50,000 merges, `gpt2_tokenizer()`;
6. the command line: `python bpe.py train|encode|download-gpt2`.

A pre-token is one regex match of the split pattern (GPT-2's by default): merges never cross one, and text
is split on special tokens before that, so no merge crosses a special token either.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import heapq
import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import chain, groupby, repeat
from multiprocessing import Pool
from pathlib import Path

import regex
from tqdm import tqdm

from files import archive_files, atomic_write, cache_dir, pypi_file

# tiktoken's r50k/gpt2 pattern. Possessive `++` stops backtracking; `\s++$|\s+(?!\S)|\s` is GPT-2's original
# `\s+(?!\S)|\s+`: a whitespace run gives its last space to the word after it (" world").
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# GPT-4's (cl100k): case-insensitive contractions, numbers in groups of at most 3, newlines kept apart.
GPT4_SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}
GPT2_EOT = "<|endoftext|>"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_RANKS_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"  # tiktoken's source
# the PyPI sdist that ships the same file: our offline source, pinned by its own sha256
GPT2_RANKS_SDIST = ("openai-whisper", "openai_whisper-20250625.tar.gz",
                    "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")
CACHE_SIZE = 1 << 20  # pre-tokens remembered by a Tokenizer (about 100 MB at most)
INF = float("inf")
INSTALL_HINT = "run the install command `python bpe.py download-gpt2` (see README.md)"


# ----------------------------------------------------------------------------- the teaching core
def get_stats(ids: list[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}. Updates `counts` in place."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of `pair`, left to right, by `idx`: merge([1, 2, 1, 2], (1, 2), 9) -> [9, 9]."""
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


def bytes_to_unicode_order() -> list[int]:
    """GPT-2's byte order: printable bytes first ('!' is 0), then the rest (space is 220).

    GPT-2's byte-level ids, and the ids Hugging Face's ByteLevel BPE trainer gives the 256 bytes, follow it."""
    order = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return order + [b for b in range(256) if b not in order]


# ----------------------------------------------------------------------------- pre-tokenization
def _asciify(pattern: str) -> re.Pattern:
    r"""The same pattern for pure-ASCII text, with its Unicode classes spelled out for the standard library's
    `re`, which splits ASCII about twice as fast as `regex`. (regex's \s is [\t\n\v\f\r ] in ASCII; re's
    would add \x1c-\x1f.) Only for the two patterns above: rewriting any pattern blindly is not safe."""
    ws = r"\t\n\x0b\x0c\r "
    classes = [(r"[^\s\p{L}\p{N}]", rf"[^{ws}A-Za-z0-9]"), (r"[^\r\n\p{L}\p{N}]", r"[^\r\nA-Za-z0-9]"),
               (r"\p{L}", "[A-Za-z]"), (r"\p{N}", "[0-9]"), (r"\S", rf"[^{ws}]"), (r"\s", rf"[{ws}]")]
    for unicode_class, ascii_class in classes:  # classes inside [...] first, then the bare ones
        pattern = pattern.replace(unicode_class, ascii_class)
    return re.compile(pattern)


ASCII_SPLITTERS = {p: _asciify(p) for p in PATTERNS.values()}
UNICODE_SPLITTERS = {p: regex.compile(p) for p in PATTERNS.values()}
# Between two lines, where a '\n' sits between two visible ASCII characters: both patterns end a pre-token
# there and never look across it, so the text on either side splits exactly as the whole does.
# ((?<=\n) first: a quick test that rejects most positions.)
LINE_CUT = re.compile(r"(?<=\n)(?<=[\x21-\x7e]\n)(?=[\x21-\x7e])")


def pretokenize(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """Split text into pre-tokens: "Hello  world!" -> ["Hello", " ", " world", "!"]."""
    ascii_splitter = ASCII_SPLITTERS.get(pattern)
    if ascii_splitter is None:
        return regex.findall(pattern, text)
    if text.isascii():  # isascii() is O(1): str knows it
        return ascii_splitter.findall(text)
    unicode_splitter = UNICODE_SPLITTERS[pattern]
    if len(text.encode("utf-8")) > 1.05 * len(text):  # much non-ASCII text: cutting it would not pay
        return unicode_splitter.findall(text)
    # Mostly ASCII text (curly quotes, a few accents) need not go all through `regex`: cut it between lines,
    # then runs of pure-ASCII lines take the fast splitter and the others `regex`.
    out = []
    for is_ascii, lines in groupby(LINE_CUT.split(text), str.isascii):
        out += (ascii_splitter if is_ascii else unicode_splitter).findall("".join(lines))
    return out


def _special_regex(special_tokens) -> regex.Pattern | None:
    """One alternation of the special tokens, longest first, so overlapping ones match the longest."""
    if not special_tokens:
        return None
    return regex.compile("|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True)))


def count_pretokens(text: str, special_tokens=(), pattern: str = GPT2_SPLIT_PATTERN) -> Counter:
    """{pre-token: count} of a text; special tokens are cut out first and never counted."""
    special_re, counts = _special_regex(special_tokens), Counter()
    for part in special_re.split(text) if special_re else [text]:
        counts.update(pretokenize(part, pattern))
    return counts


def _count_file_chunk(job) -> Counter:
    """Worker: read bytes [start, end) of a file, decode, count pre-tokens."""
    path, start, end, special_tokens, pattern = job
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: invalid byte {data[e.start:e.start + 1]!r} at byte offset "
                         f"{start + e.start}; convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    return count_pretokens(text, special_tokens, pattern)


def _chunk_boundaries(path: Path, special_tokens, chunk_bytes: int) -> list[int]:
    """Cut a file every ~chunk_bytes, moving each cut forward to where a special token starts or to the start
    of a line where '\\n' sits between two visible ASCII characters: both cuts are where GPT-2's and GPT-4's
    patterns cut anyway, so counting chunks apart changes nothing. (Line cuts only if no special token holds
    a '\\n': then none can straddle one. A file with few special tokens still gets cut every ~chunk_bytes.)"""
    size = path.stat().st_size
    cuts = [regex.escape(s.encode("utf-8")) for s in special_tokens]
    if not any("\n" in s for s in special_tokens):
        cuts.append(rb"(?<=[\x21-\x7e]\n)[\x21-\x7e]")
    cut = regex.compile(b"|".join(cuts))
    keep = max([2] + [len(s.encode("utf-8")) for s in special_tokens])  # bytes a cut may need before a block
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


def count_pretokens_in_file(path, special_tokens=(), pattern: str = GPT2_SPLIT_PATTERN, num_proc: int = 1,
                            chunk_bytes: int | None = None, progress: bool = False) -> Counter:
    """{pre-token: count} of a file of any size: chunks are counted in `num_proc` worker processes, so memory
    holds a few chunks and the counts, never the whole text. Chunks are about 4 MB (a chunk's list of
    pre-tokens costs ~15x its size; each ends at the first safe cut after that, see _chunk_boundaries) and,
    with several workers, small enough to give each ~4 of them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file {path} not found; pass an existing text file")
    if not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc={num_proc!r}: give at least 1 worker process (num_proc=1 counts in this one)")
    if chunk_bytes is None:
        per_worker = path.stat().st_size // (4 * num_proc)
        chunk_bytes = 4 << 20 if num_proc == 1 else min(4 << 20, max(1 << 18, per_worker))
    bounds = _chunk_boundaries(path, special_tokens, chunk_bytes)
    jobs = [(str(path), s, e, tuple(special_tokens), pattern) for s, e in zip(bounds, bounds[1:])]
    counts = Counter()
    bar = tqdm(total=len(jobs), desc="pre-tokenize", unit="chunk", disable=not progress)
    if num_proc > 1 and len(jobs) > 1:
        with Pool(num_proc) as pool:
            for c in pool.imap_unordered(_count_file_chunk, jobs):
                counts.update(c)
                bar.update()
    else:
        for job in jobs:
            counts.update(_count_file_chunk(job))
            bar.update()
    bar.close()
    return counts


# ----------------------------------------------------------------------------- training
TIE_BREAKS = ("bytes", "hf")


def _check_train_args(vocab_size: int, special_tokens, tie_break: str) -> int:
    """Validate, and return the number of merges to learn."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break={tie_break!r} is unknown; use one of {TIE_BREAKS}")
    if len(set(special_tokens)) != len(special_tokens) or any(not s for s in special_tokens):
        raise ValueError(f"special tokens {list(special_tokens)!r} must be distinct non-empty strings")
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must hold the 256 bytes and the "
                         f"{len(special_tokens)} special token(s), so use at least {256 + len(special_tokens)}")
    return n_merges


def _finish(merges: list[tuple[int, int]], special_tokens, pattern: str) -> "Tokenizer":
    """Vocab: bytes 0..255 (id b is byte b), then the merges in creation order, then the special tokens."""
    vocab = {i: bytes([i]) for i in range(256)}
    merge_ids = {}
    for i, (a, b) in enumerate(merges):
        merge_ids[(a, b)] = 256 + i
        vocab[256 + i] = vocab[a] + vocab[b]
    specials = {s: len(vocab) + i for i, s in enumerate(special_tokens)}
    return Tokenizer(merge_ids, vocab, specials, pattern, learned=True)


def train_bpe_naive(text: str, vocab_size: int, special_tokens=(), pattern: str = GPT2_SPLIT_PATTERN,
                    tie_break: str = "bytes") -> "Tokenizer":
    """The reference trainer: every pre-token occurrence as a list of byte ids, recount all pairs after
    each merge, merge the most frequent. Equal counts: the greater (bytes_a, bytes_b) wins, or with
    tie_break="hf" the pair with the smaller ids in GPT-2's byte order (Hugging Face's rule)."""
    special_tokens = list(special_tokens)
    n_merges = _check_train_args(vocab_size, special_tokens, tie_break)
    special_re = _special_regex(special_tokens)
    parts = special_re.split(text) if special_re else [text]
    chunks = [list(piece.encode("utf-8")) for part in parts for piece in pretokenize(part, pattern)]
    if not chunks:
        raise ValueError("the training corpus is empty (no text outside special tokens); give it some text")
    vocab = {i: bytes([i]) for i in range(256)}
    hf_rank = {b: r for r, b in enumerate(bytes_to_unicode_order())}  # new ids get 256, 257, ...: also theirs
    merges = []
    for i in range(n_merges):
        stats = {}
        for ids in chunks:
            get_stats(ids, stats)
        if not stats:
            break  # every pre-token is a single token: nothing left to merge
        if tie_break == "hf":
            pair = max(stats, key=lambda p: (stats[p], -hf_rank.get(p[0], p[0]), -hf_rank.get(p[1], p[1])))
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

    A heap holds (-count, tie key, pair), so the top is the winner, ties included, in O(log n). Counts
    change after every merge; instead of updating heap entries we leave stale ones in and check on pop:
    a popped entry whose count is no longer the pair's count is pushed back with the right count (counts
    of existing pairs only go down, so the first up-to-date top is the true winner, as in HF's trainer)."""
    vocab = [bytes([i]) for i in range(256)]
    if tie_break == "hf":
        rank = [0] * 256
        for r, b in enumerate(bytes_to_unicode_order()):
            rank[b] = r
        tie_key = lambda p: (rank[ord(p[0])], rank[ord(p[1])])  # smaller ids win
    else:
        # To make a min-heap prefer the greater bytes, map each byte c to chr(255 - c) and end every token
        # with chr(256), greater than any mapped byte: then key(x) < key(y) exactly when x > y (a prefix of a
        # token is smaller than the token, so its key, ending early with chr(256), must be greater).
        inv = [chr(255 - i) + chr(256) for i in range(256)]
        tie_key = lambda p: inv[ord(p[0])] + inv[ord(p[1])]

    # A word is a str with one character per token, chr(id): str.find and str.replace then scan and merge in C,
    # and a pair is a 2-character str, a cheap dict key. (str.replace is `merge`: left to right, no overlap.)
    words = [w.encode("utf-8").decode("latin-1") for w in word_counts]  # chr(byte) per byte
    counts = list(word_counts.values())
    pair_counts = defaultdict(int)
    where = defaultdict(list)  # pair -> indices of the words that hold it (maybe stale or repeated: checked)
    for wi, (w, c) in enumerate(zip(words, counts)):
        for i in range(len(w) - 1):
            pair_counts[w[i:i + 2]] += c
            where[w[i:i + 2]].append(wi)
    heap = [(-c, tie_key(p), p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    bar = tqdm(total=n_merges, desc="merges", unit="merge", disable=not progress)
    while len(merges) < n_merges and heap:
        neg, _, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale: the pair's count went down since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, tie_key(pair), pair))
            continue
        a, b = ord(pair[0]), ord(pair[1])
        idx = 256 + len(merges)
        merges.append((a, b))
        vocab.append(vocab[a] + vocab[b])
        if tie_break == "hf":
            rank.append(idx)  # HF numbers new tokens in creation order too
        else:
            inv.append(inv[a][:-1] + inv[b])  # mapped bytes of a, of b, one terminator
        # Rewrite each word that holds the pair, and note what changed around each occurrence x a b y:
        # pairs (x, a) and (b, y) are lost, (x, idx) and (idx, y) are born ("a b a b" gives one (idx, idx)).
        C = chr(idx)
        CC = C + C
        born = defaultdict(int)
        for wi in where.pop(pair):
            w, c = words[wi], counts[wi]
            i, end = w.find(pair), -1
            if i < 0:
                continue  # a stale index entry: an earlier merge already took the pair apart
            while i >= 0:
                if i == end:  # right after the previous occurrence: the pair (idx, idx) is born
                    born[CC] += c
                    where[CC].append(wi)
                elif i:
                    pair_counts[w[i - 1:i + 1]] -= c  # (x, a) is lost
                    xc = w[i - 1] + C
                    born[xc] += c
                    where[xc].append(wi)
                end = i + 2
                if end < len(w):
                    pair_counts[w[i + 1:i + 3]] -= c  # (b, y) is lost
                    if not w.startswith(pair, end):  # else the next occurrence counts (idx, idx)
                        cy = C + w[end]
                        born[cy] += c
                        where[cy].append(wi)
                i = w.find(pair, end)
            words[wi] = w.replace(pair, C)
        del pair_counts[pair]  # every occurrence is gone (counts of lost pairs may reach 0: left in, harmless)
        for p, c in born.items():  # new pairs (they hold idx): the only counts that go up
            pair_counts[p] = c
            heapq.heappush(heap, (-c, tie_key(p), p))
        if progress:
            bar.update()
    bar.close()
    return merges


def train_bpe(source: str | os.PathLike, vocab_size: int, special_tokens=(), pattern: str = GPT2_SPLIT_PATTERN,
              tie_break: str = "bytes", num_proc: int = 1, progress: bool = False) -> "Tokenizer":
    """The fast trainer. `source` is the text itself (a str) or a file (a Path / os.PathLike).

    vocab_size counts the 256 bytes, the merges and the special tokens. Fewer merges are learned if every
    pre-token is already a single token. Same result as train_bpe_naive, merge for merge."""
    special_tokens = list(special_tokens)
    n_merges = _check_train_args(vocab_size, special_tokens, tie_break)
    if isinstance(source, str) and "\n" not in source and len(source) < 4096 and os.path.isfile(source):
        raise ValueError(f"train_bpe got the str {source!r}, which names a file: a str is trained on as text; "
                         "pass Path(...) to train on the file")
    if isinstance(source, str):
        word_counts = count_pretokens(source, special_tokens, pattern)
    else:
        word_counts = count_pretokens_in_file(source, special_tokens, pattern, num_proc, progress=progress)
    if not word_counts:
        where = "the training text" if isinstance(source, str) else f"training file {source}"
        raise ValueError(f"{where} is empty (no text outside special tokens); give it some text")
    merges = _bpe_merges(word_counts, n_merges, tie_break, progress)
    return _finish(merges, special_tokens, pattern)


# ----------------------------------------------------------------------------- the tokenizer
FORMAT_HEADER = "scratchgpt-bpe 1"


class Tokenizer:
    """A byte-level BPE tokenizer.

    merges: {(id_a, id_b): new_id} in the order they were learned (earlier merges apply first), or a list of
        (bytes_a, bytes_b) pairs (new id: the id of bytes_a + bytes_b in vocab).
    vocab: {id: bytes}; must hold every single byte. Ids are whatever it says (GPT-2's are permuted).
    special_tokens: {text: id}; an id missing from vocab is added with the token's UTF-8 bytes.
    learned: the merges are a BPE trainer's, in the order it learned them (ours, or GPT-2's rank table). Then a
        pre-token that is a whole token is known to encode to that token (see _whole below); else it is checked.
    """

    def __init__(self, merges, vocab: dict[int, bytes], special_tokens: dict[str, int] | None = None,
                 pattern: str = GPT2_SPLIT_PATTERN, learned: bool = False):
        self.vocab = dict(vocab)
        if not self.vocab:
            raise ValueError("the vocab is empty; a byte-level vocab needs at least the 256 single-byte tokens")
        self.special_tokens = dict(special_tokens or {})
        for s, i in self.special_tokens.items():
            if self.vocab.setdefault(i, s.encode("utf-8")) != s.encode("utf-8"):
                raise ValueError(f"special token {s!r} has id {i}, which the vocab already uses for "
                                 f"{self.vocab[i]!r}; give it an unused id")
        if not isinstance(merges, dict):
            by_bytes = {v: i for i, v in self.vocab.items()}
            ids = {}
            for n, (x, y) in enumerate(merges):
                for t in (x, y, x + y):
                    if t not in by_bytes:
                        raise ValueError(f"merge #{n} ({x!r}, {y!r}): {t!r} is not in the vocab; "
                                         "merges and vocab must come from the same training run")
                ids[(by_bytes[x], by_bytes[y])] = by_bytes[x + y]
            merges = ids
        self.merges = dict(merges)
        for (a, b), i in self.merges.items():
            if a not in self.vocab or b not in self.vocab or self.vocab.get(i) != self.vocab[a] + self.vocab[b]:
                raise ValueError(f"merge ({a}, {b}) -> {i} does not match the vocab (id {i} must be the "
                                 "bytes of a followed by those of b); merges and vocab must belong together")
        self.pattern = pattern
        self.n_vocab = max(self.vocab) + 1
        self.eot_id = self.special_tokens.get(GPT2_EOT)  # ends every document and answer, if present
        if min(self.vocab) < 0 or self.n_vocab > sys.maxunicode:
            raise ValueError(f"token ids must be in 0..{sys.maxunicode}, got {min(self.vocab)}..{self.n_vocab - 1}")
        single = {v[0]: i for i, v in sorted(self.vocab.items(), reverse=True) if len(v) == 1}
        missing = [b for b in range(256) if b not in single]
        if missing:
            raise ValueError(f"the vocab lacks {len(missing)} single-byte token(s), e.g. byte {missing[0]}; a "
                             "byte-level vocab needs all 256 to encode any text")
        # As in the fast trainer, a token sequence is a str of chr(id), a pair a 2-character str: the BPE loop
        # below then runs in C calls. GPT-2's byte ids are permuted: byte b starts as chr(id of bytes([b])).
        self._byte_chars = {b: chr(single[b]) for b in range(256)}
        self._rank = {chr(a) + chr(b): r for r, (a, b) in enumerate(self.merges)}  # earlier merge = lower rank
        self._merged = [chr(i) for i in self.merges.values()]  # rank -> the token that merge makes
        try:  # a bad pattern fails here, not at the first encode
            regex.compile(pattern)
        except (regex.error, TypeError) as e:
            raise ValueError(f"split pattern {pattern!r} is not a valid regex ({e}); use bpe.GPT2_SPLIT_PATTERN "
                             "or bpe.GPT4_SPLIT_PATTERN") from None
        self._special_re = _special_regex(self.special_tokens)
        self._cache: dict[str, tuple[int, ...]] = {}  # pre-token -> ids: real text repeats its words a lot
        # A pre-token that is a whole token is that one id, without running BPE: tiktoken's rule, and about half
        # of a text's distinct words are whole GPT-2 tokens. For learned merges BPE gets there anyway: training
        # made token t from a word in which no merge crossed t's edges, so t's bytes alone merge the same way,
        # in the same order, up to t. Any merge list need not: with merges b+c, a+b, ab+c, "abc" is [a, bc].
        # So unless the merges are learned, each token is checked once, here (~7 us a token).
        self._whole: dict[str, int] = {}
        specials = set(self.special_tokens.values())
        for i, token in self.vocab.items():
            text = readable(token)
            if i not in specials and isinstance(text, str) and (learned or self._bpe(text) == (i,)):
                self._whole[text] = i

    # -- encoding
    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Ids of one pre-token: start from its bytes, merge the pair with the earliest-learned merge
        (leftmost first), repeat. One merge at a time gives what `merge`-ing every occurrence would: a pair
        born from a merge always ranks after it, so all occurrences go before anything else does."""
        parts = list(piece.encode("utf-8").decode("latin-1").translate(self._byte_chars))
        rank_of, merged = self._rank.get, self._merged
        ranks = list(map(rank_of, map(str.__add__, parts[:-1], parts[1:]), repeat(INF)))  # ranks[i]: parts i, i+1
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
        return tuple(map(ord, parts))  # a tuple: chain() joins tuples faster than lists

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode, treating special tokens as plain text."""
        pieces, cache = pretokenize(text, self.pattern), self._cache
        try:  # every piece seen before: one pass in C
            return list(chain.from_iterable(map(cache.__getitem__, pieces)))
        except KeyError:
            pass
        new = set(pieces).difference(cache)
        if len(cache) + len(new) > CACHE_SIZE:
            cache.clear()  # bound the memory on endless streams of new words
            new = set(pieces)
        whole, bpe = self._whole.get, self._bpe
        for piece in new:
            i = whole(piece)
            cache[piece] = (i,) if i is not None else bpe(piece)
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Encode with tiktoken's rules for special tokens in the text:
        "none_raise" (default): raise if one is present; "none": encode them as plain text;
        "all": each becomes its id; a set of names: those become ids, any other one present raises."""
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special in ("none", "none_raise"):
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special names unknown special token(s) {sorted(unknown)}; "
                                 f"this tokenizer has {sorted(self.special_tokens)}")
        else:
            raise ValueError(f"allowed_special={allowed_special!r}; use 'all', 'none', 'none_raise' or a set")
        if self._special_re is None or allowed_special == "none":
            return self.encode_ordinary(text)
        matches = list(self._special_re.finditer(text))
        for m in matches:
            if m.group() not in allowed:
                raise ValueError(f"the text contains the special token {m.group()!r} at character "
                                 f"{m.start()}; pass allowed_special='all' (or a set naming it) to encode it "
                                 "as one token, or 'none' to encode it as plain text")
        out, start = [], 0
        for m in matches:
            out += self.encode_ordinary(text[start:m.start()])
            out.append(self.special_tokens[m.group()])
            start = m.end()
        return out + self.encode_ordinary(text[start:])

    def encode_iterable(self, lines: Iterable[str], allowed_special="none_raise",
                        buffer_chars: int = 1 << 16) -> Iterator[int]:
        """Yield the ids of encode("".join(lines)) lazily, holding about `buffer_chars` of text at a time.

        Text is buffered and cut only where the split pattern cuts anyway (see _safe_cut), so the ids are
        exactly encode()'s."""
        buf, threshold = "", buffer_chars
        for line in lines:
            buf += line
            if len(buf) >= threshold:
                cut = self._safe_cut(buf)
                if cut:
                    yield from self.encode(buf[:cut], allowed_special)
                    buf, threshold = buf[cut:], buffer_chars
                else:
                    threshold = 2 * len(buf)  # no safe cut yet (one endless pre-token?): look again later
        if buf:
            yield from self.encode(buf, allowed_special)

    # A cut is safe before " <letter>" after a visible character, and at the start of a line that follows a
    # single '\n' after a visible character: GPT-2's and GPT-4's patterns end a pre-token there and never look
    # back across it, so both halves split exactly as the whole does. (A custom pattern may not.)
    _CUT_RE = regex.compile(r"(?<=[^\s]) (?=\p{L})|(?<=[^\s]\n)(?=[^\s])")

    def _safe_cut(self, text: str) -> int:
        """The last safe cut in text, not inside a special token and not in the last len(longest special)
        characters (a special token there may be only half read), or 0 if there is none."""
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
        ids = list(ids)
        try:
            return b"".join(map(self.vocab.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in self.vocab)
            raise ValueError(f"cannot decode id {bad!r}: this tokenizer's ids are 0..{self.n_vocab - 1} "
                             f"({len(self.vocab)} in use); was it encoded with another tokenizer?") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; bytes that are not valid UTF-8 (a multi-byte character cut in half) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- saving and loading
    def dumps(self) -> str:
        """The model as UTF-8 text: every token's bytes in base64, merges as ids, specials as JSON strings
        (so any bytes and any special token, spaces included, round-trip)."""
        lines = [FORMAT_HEADER, "pattern " + json.dumps(self.pattern)]
        lines += [f"special {i} {json.dumps(s)}" for s, i in self.special_tokens.items()]
        specials = set(self.special_tokens.values())
        lines += [f"token {i} {base64.b64encode(v).decode()}" for i, v in self.vocab.items() if i not in specials]
        lines += [f"merge {a} {b} {i}" for (a, b), i in self.merges.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def loads(cls, s: str, source: str = "the model text") -> "Tokenizer":
        lines = s.split("\n")
        if lines[0] != FORMAT_HEADER:
            raise ValueError(f"{source} is not a scratchgpt BPE model (first line {lines[0][:40]!r}, expected "
                             f"{FORMAT_HEADER!r}); give a file written by Tokenizer.save / bpe.py train")
        pattern, specials, vocab, merges = None, {}, {}, {}
        for n, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            try:
                kind, rest = line.split(" ", 1)
                if kind == "pattern":
                    pattern = json.loads(rest)
                elif kind == "special":
                    i, name = rest.split(" ", 1)
                    specials[json.loads(name)] = int(i)
                elif kind == "token":
                    i, b64 = rest.split(" ")
                    vocab[int(i)] = base64.b64decode(b64, validate=True)
                elif kind == "merge":
                    a, b, i = map(int, rest.split(" "))
                    merges[(a, b)] = i
                else:
                    raise ValueError(f"unknown record {kind!r}")
            except ValueError as e:  # also binascii.Error and json's JSONDecodeError, both ValueErrors
                raise ValueError(f"{source} is corrupt at line {n} ({line[:60]!r}): {e}; "
                                 "save the tokenizer again") from None
        if pattern is None:
            raise ValueError(f"{source} is corrupt: it has no 'pattern' line; save the tokenizer again")
        try:
            return cls(merges, vocab, specials, pattern)
        except ValueError as e:
            raise ValueError(f"{source} is corrupt: {e}") from None

    def save(self, path) -> Path:
        """Write path/tokenizer.bpe (the model) and path/vocab.txt (for humans). Returns the model file."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = path / "tokenizer.bpe"
        atomic_write(model, lambda f: f.write(self.dumps().encode("utf-8")))
        atomic_write(path / "vocab.txt", lambda f: f.write(self.vocab_listing().encode("utf-8")))
        return model

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Load a tokenizer.bpe file, or a directory that holds one."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.bpe"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}; train one with `python bpe.py train ... --out DIR`")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a scratchgpt BPE model (not UTF-8 text); give a file written "
                             "by Tokenizer.save / bpe.py train") from None
        return cls.loads(text, source=str(path))

    def vocab_listing(self) -> str:
        """One line per id: the token as a JSON string (or b'...' if it is not valid UTF-8 on its own, like
        half a character), and the two tokens it was merged from."""
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


def readable(token: bytes) -> str | bytes:
    """A token as text if it is valid UTF-8 on its own, else as bytes (half of a multi-byte character)."""
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        return token


# ----------------------------------------------------------------------------- GPT-2
def gpt2_ranks_path() -> Path:
    """Where the GPT-2 rank table is cached: $SCRATCHGPT_CACHE or ~/.cache/scratchgpt."""
    return cache_dir() / "gpt2.tiktoken"


def _check_sha256(data: bytes, source: str) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != GPT2_RANKS_SHA256:
        raise ValueError(f"{source} has sha256 {digest}, not GPT-2's {GPT2_RANKS_SHA256}; delete it and "
                         f"{INSTALL_HINT}")
    return data


def download_gpt2() -> Path:
    """Fetch GPT-2's rank table once: tiktoken's own download first, else the PyPI sdist of openai-whisper
    (which ships the same file), verify its sha256, and cache it. Returns the cached path."""
    path = gpt2_ranks_path()
    if path.is_file():
        _check_sha256(path.read_bytes(), str(path))
        print(f"GPT-2 ranks already cached at {path}")
        return path
    try:
        import tiktoken.load
        data = tiktoken.load.read_file_cached(GPT2_RANKS_URL, GPT2_RANKS_SHA256)
        print(f"downloaded GPT-2 ranks with tiktoken from {GPT2_RANKS_URL}")
    except Exception as e:  # any network failure: say so, then use the second source
        print(f"tiktoken could not download {GPT2_RANKS_URL} ({type(e).__name__}); trying PyPI {GPT2_RANKS_SDIST[1]}")
        data = _gpt2_ranks_from_pypi()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _check_sha256(data, "the downloaded GPT-2 rank file")
    atomic_write(path, lambda f: f.write(data))
    print(f"GPT-2 ranks cached at {path} (sha256 verified)")
    return path


def _gpt2_ranks_from_pypi() -> bytes:
    try:
        [(_, data)] = archive_files(pypi_file(*GPT2_RANKS_SDIST), "*/whisper/assets/gpt2.tiktoken")
    except ValueError as e:
        raise ValueError(f"{e}; check the network, or copy a gpt2.tiktoken with sha256 {GPT2_RANKS_SHA256} "
                         f"to {gpt2_ranks_path()}") from None
    return data


def _rank_bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's BPE on raw bytes, using only ranks < max_rank: merge the adjacent parts whose
    concatenation has the lowest rank, until none is left."""
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


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's tokenizer, ids identical to tiktoken's "gpt2", from the cached rank table.

    The table maps each token's bytes to its id; the merge that made token t is found by running BPE on
    t's bytes with only the tokens before t: it stops at exactly two parts, and those are the merge."""
    path = gpt2_ranks_path()
    if not path.is_file():
        raise FileNotFoundError(f"GPT-2 rank table not found at {path}; {INSTALL_HINT}")
    ranks = {}
    for line in _check_sha256(path.read_bytes(), str(path)).splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    merges = {}
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) > 1:
            a, b = _rank_bpe(ranks, token, rank)
            merges[(ranks[a], ranks[b])] = rank
    vocab = {rank: token for token, rank in ranks.items()}
    return Tokenizer(merges, vocab, {GPT2_EOT: 50256}, GPT2_SPLIT_PATTERN, learned=True)


def load_tokenizer(spec: str) -> Tokenizer:
    """"gpt2", or a directory / tokenizer.bpe file written by Tokenizer.save."""
    return gpt2_tokenizer() if spec == "gpt2" else Tokenizer.load(spec)


# ----------------------------------------------------------------------------- tokenizer specs
class CharTokenizer:
    """nanoGPT's character-level tokenizer (shakespeare_char): one id per character of `chars`, with the
    encode / decode / n_vocab / eot_id interface of Tokenizer, so that every script takes either."""

    def __init__(self, chars: str):
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.n_vocab = len(chars)
        self.eot_id = None  # no end-of-text character

    def encode(self, text: str, allowed_special=()) -> list[int]:
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"characters {unknown[:10]} are not in this model's character vocabulary")
        return [self.stoi[ch] for ch in text]

    encode_ordinary = encode

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def tokenizer_from_spec(spec) -> Tokenizer | CharTokenizer:
    """The tokenizer a checkpoint or a dataset's metadata names. The spec is {"kind": "gpt2"} |
    {"kind": "char", "chars": "..."} | {"kind": "bpe", "model": Tokenizer.dumps()}."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "bpe":
        return Tokenizer.loads(spec["model"])
    if kind == "char":
        return CharTokenizer(spec["chars"])
    raise ValueError(f"tokenizer spec {str(spec)[:80]!r}: expected a dict with kind gpt2, char or bpe")


def tokenizer_spec(tok: Tokenizer | CharTokenizer) -> dict:
    """The spec to store with a checkpoint (tokenizer_from_spec reads it): GPT-2's by name, else in full."""
    if isinstance(tok, CharTokenizer):
        return {"kind": "char", "chars": tok.chars}
    if tok.n_vocab == 50257 and tok.special_tokens == {GPT2_EOT: 50256}:  # cheap checks first
        gpt2 = gpt2_tokenizer()
        if tok.vocab == gpt2.vocab and tok.merges == gpt2.merges:
            return {"kind": "gpt2"}
    return {"kind": "bpe", "model": tok.dumps()}


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a BPE tokenizer on a text file")
    t.add_argument("--input", required=True, help="UTF-8 text file, any size")
    t.add_argument("--vocab-size", type=int, required=True, help="256 bytes + merges + special tokens")
    t.add_argument("--special", action="append", default=[], help="a special token (repeatable)")
    t.add_argument("--out", required=True, help="directory for tokenizer.bpe and vocab.txt")
    t.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt2", help="pre-tokenization regex")
    t.add_argument("--tie-break", choices=TIE_BREAKS, default="bytes")
    t.add_argument("--num-proc", type=int, default=os.cpu_count(), help="pre-tokenization worker processes")
    e = sub.add_parser("encode", help="show the ids and pieces of a text")
    e.add_argument("--model", required=True, help="'gpt2' or a directory written by `train`")
    e.add_argument("--text", required=True)
    sub.add_parser("download-gpt2", help="fetch and cache GPT-2's rank table (part of the install)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "train":
            tok = train_bpe(Path(args.input), args.vocab_size, args.special, PATTERNS[args.pattern],
                            args.tie_break, args.num_proc, progress=True)
            print(f"trained {len(tok.merges)} merges, vocab {len(tok.vocab)}; wrote {tok.save(args.out)}")
        elif args.cmd == "encode":
            tok = load_tokenizer(args.model)
            ids = tok.encode(args.text, allowed_special="all")
            print(ids)
            print([readable(tok.vocab[i]) for i in ids])
        else:
            download_gpt2()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
