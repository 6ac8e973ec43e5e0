"""WordPiece: train a BERT vocab.txt from a corpus, tokenize exactly like BERT, and compare with
GPT-2's BPE.

BERT tokenizes in two steps:
1. the basic step: drop control characters, turn every whitespace into a space, put each CJK
   ideograph on its own, optionally lowercase and strip accents, then split on whitespace and
   around every punctuation mark;
2. WordPiece: each word is cut greedily into the longest vocab piece from the left, continuation
   pieces carry a `##` prefix ("unaffable" -> un ##aff ##able). A word with any part not in the
   vocab, or longer than 100 characters, becomes one [UNK] as a whole.

Training (the classic "make_voca") builds the vocab bottom-up like BPE: start from the characters,
then repeatedly add the merge of the best adjacent pair. Two scores for "best":
- "frequency": the most frequent pair. This is what Hugging Face's WordPieceTrainer actually does
  (it is its BPE trainer with a `##` prefix);
- "likelihood": freq(ab) / (freq(a) * freq(b)), the score described for Google's WordPiece: merge
  the pair that occurs together far more often than chance.

    python wordpiece.py train --input corpus.txt --vocab_size 8000 --output vocab.txt
    python wordpiece.py compare --vocab vocab.txt --text "The tree fell unexpectedly short."
"""
from __future__ import annotations

import argparse
import functools
import heapq
import itertools
import operator
import os
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict

from tqdm import tqdm

import bpe  # GPT-2's BPE for the comparison, and readable
from configurator import ArgumentParser, quiet_broken_pipe
from files import atomic_write, read_text

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNK = "[UNK]"
MAX_WORD_CHARS = 100  # BERT's max_input_chars_per_word: longer words become [UNK]
SCORINGS = ("frequency", "likelihood")
# BERT's "Chinese characters": the CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana).
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


# ----------------------------------------------------------------------------- the basic step
ASTRAL = "\U00010000-\U0010ffff"  # code points above the Basic Multilingual Plane (emoji, ...)
# For the common all-ASCII text, BERT's rules reduce to these small, fast classes.
ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")
# a run of letters/digits, or one punctuation mark
ASCII_WORD = re.compile(r"[^\s!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted (first, last) code point ranges with touching ranges joined."""
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def _minus(ranges: list[tuple[int, int]], points: tuple[int, ...]) -> list[tuple[int, int]]:
    """The ranges with some single code points taken out."""
    out = []
    for lo, hi in ranges:
        for p in sorted(points):
            if lo <= p <= hi:
                if p > lo:
                    out.append((lo, p - 1))
                lo = p + 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def _class_body(ranges: list[tuple[int, int]]) -> str:
    """The inside of a regex character class for the ranges ('a-z0-9'), escaped."""
    return "".join(re.escape(chr(lo)) + (f"-{re.escape(chr(hi))}" if hi > lo else "")
                   for lo, hi in ranges)


def _one_of(ranges: list[tuple[int, int]]) -> str:
    """A regex matching one character of the set, fast.

    Python's re tests a class's part above U+FFFF as a list of ranges, one by one, for every
    character that misses its fast BMP table; so the astral part goes behind a cheap one-range
    lookahead that BMP characters fail at once.
    """
    ranges = _merge(ranges)
    bmp = [(lo, min(hi, 0xFFFF)) for lo, hi in ranges if lo <= 0xFFFF]
    astral = [(max(lo, 0x10000), hi) for lo, hi in ranges if hi >= 0x10000]
    return "|".join(([f"[{_class_body(bmp)}]"] if bmp else []) +
                    ([f"(?=[{ASTRAL}])[{_class_body(astral)}]"] if astral else []))


def _unicode_classes() -> tuple[list, list, list]:
    """BERT's control, punctuation and accent-mark characters, as (first, last) code point ranges.

    Unicode assigns categories in runs (most of the planes above U+FFFF are one unassigned run),
    so this walks the runs of equal category instead of 1.1 million code points one by one.
    """
    control, punct, marks = [], [], []
    cp = 0
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    for cat, run in itertools.groupby(categories):
        lo, cp = cp, cp + sum(1 for _ in run)
        # "other" characters (control, format, private use, unassigned) are dropped
        if cat.startswith("C"):
            control.append((lo, cp - 1))
        if cat.startswith("P"):
            punct.append((lo, cp - 1))
        if cat == "Mn":  # combining marks: what is left of an accent after NFD decomposition
            marks.append((lo, cp - 1))
    # BERT's exceptions: \t \n \r are whitespace, not control; U+FFFD (replacement character) is
    # dropped; all non-alphanumeric ASCII ($, ^, `, ...) is punctuation, even where Unicode says
    # "symbol"
    control = _minus(control, (9, 10, 13)) + [(0xFFFD, 0xFFFD)]
    punct += [(33, 47), (58, 64), (91, 96), (123, 126)]
    return control, punct, marks


@functools.cache
def _regexes() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """BERT's character classes as three compiled regexes (control, word, accent marks).

    Built once from unicodedata (a fraction of a second). A few C-speed regex passes over the
    whole text, instead of BERT's Python loop over characters, are what make this tokenizer fast.
    """
    control, punct, marks = _unicode_classes()
    not_word = _merge(punct + CJK_RANGES)
    # word characters above U+FFFF: everything there that is not punctuation or CJK (emoji, ...)
    word_astral, start = [], 0x10000
    for lo, hi in not_word:
        if hi >= 0x10000:
            if lo > start:
                word_astral.append((start, lo - 1))
            start = hi + 1
    word_astral.append((start, sys.maxunicode))
    bmp_not_word = _class_body([(lo, min(hi, 0xFFFF)) for lo, hi in not_word if lo <= 0xFFFF])
    # a word is a run of anything that is not whitespace, punctuation or a CJK ideograph; each CJK
    # ideograph and each punctuation mark is a word of its own
    word = (f"(?:[^\\s{bmp_not_word}{ASTRAL}]+|{_one_of(word_astral)})+"
            f"|{_one_of(CJK_RANGES)}|{_one_of(punct)}")
    return (re.compile(f"(?:{_one_of(control)})+"), re.compile(word),
            re.compile(f"(?:{_one_of(marks)})+"))


def pre_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """BERT's basic step (no special tokens here).

    'Héllo, 世界!' -> ['hello', ',', '世', '界', '!'].
    """
    if text.isascii():  # the common case: no Unicode normalisation, small regexes
        text = ASCII_CONTROL.sub("", text)
        return ASCII_WORD.findall(text.lower() if lowercase else text)
    control, word, marks = _regexes()
    text = control.sub("", text)
    if lowercase:  # lowercase, strip accents: NFD splits 'é' into 'e' + a mark, drop the marks
        text = marks.sub("", unicodedata.normalize("NFD", text.lower()))
    else:  # cased: NFC, so that 'e' + U+0301 matches a vocab 'é' (as transformers' Python BERT)
        text = unicodedata.normalize("NFC", text)
    return word.findall(text)


def _split_special(text: str, special_re: re.Pattern | None) -> list[str]:
    """[text, special, text, special, ..., text]: special tokens such as [CLS] stay whole."""
    return [text] if special_re is None else special_re.split(text)


def _special_regex(special_tokens: list[str]) -> re.Pattern | None:
    """A regex that captures any of the special tokens (None for none), for _split_special."""
    # longest first, so that a special token that is a prefix of another one does not cut it
    ordered = sorted(special_tokens, key=lambda s: (-len(s), s))
    return re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None


# ----------------------------------------------------------------------------- the tokenizer
class _WordCache(dict):
    """word -> tuple of ids; a miss runs WordPiece once.

    Real text repeats words, so most lookups hit (it grows with the number of distinct words
    seen: about 200 bytes each).
    """

    def __init__(self, wordpiece):
        super().__init__()
        self.wordpiece = wordpiece

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = self[word] = self.wordpiece(word)
        return ids


def _token_ids(vocab: list[str]) -> dict[str, int]:
    """token -> id for a vocab, after checking that every entry can be a line of vocab.txt."""
    token_to_id = {}
    for i, token in enumerate(vocab):
        if not isinstance(token, str) or not token or token != token.strip() or "\n" in token:
            raise ValueError(f"vocab entry {i} is {token!r}: every token must be a non-empty "
                             "string without surrounding whitespace or newlines")
        if token in token_to_id:
            raise ValueError(f"token {token!r} appears twice in the vocab (ids "
                             f"{token_to_id[token]} and {i}); a vocab must list each token once")
        token_to_id[token] = i
    if UNK not in token_to_id:
        raise ValueError(f"the vocab has no {UNK} token; WordPiece needs it for words it cannot "
                         f"split. Add a line {UNK} to the vocab (BERT puts it at id 1)")
    return token_to_id


class WordPieceTokenizer:
    """BERT's tokenizer for a vocab (list of tokens in id order; it must contain [UNK]).

    Special tokens of BERT ([PAD] [UNK] [CLS] [SEP] [MASK]) that are in the vocab stay whole in
    the text; pass `special_tokens` to use others. encode() adds no [CLS]/[SEP]: add them yourself
    where a model wants them.
    """

    def __init__(self, vocab: list[str], lowercase: bool = True,
                 special_tokens: list[str] | None = None):
        vocab = list(vocab)
        token_to_id = _token_ids(vocab)
        if special_tokens is None:
            special_tokens = [t for t in BERT_SPECIAL_TOKENS if t in token_to_id]
        for t in special_tokens:
            if t not in token_to_id:
                raise ValueError(f"special token {t!r} is not in the vocab; add it or leave it "
                                 "out of special_tokens")
        self.vocab = vocab  # id -> token
        self.token_to_id = token_to_id
        self.lowercase = lowercase
        self.special_tokens = list(special_tokens)
        self.unk_id = token_to_id[UNK]
        self._special_re = _special_regex(self.special_tokens)
        # no piece is longer than this, so the longest-match search can start there instead of at
        # the word's end
        self._max_piece = max(len(t[2:]) if t.startswith("##") else len(t) for t in vocab)
        self._cache = _WordCache(self._wordpiece)

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, lowercase: bool = True,
                        special_tokens: list[str] | None = None) -> WordPieceTokenizer:
        """The tokenizer of a BERT vocab.txt (one token per line, line number = id)."""
        return cls(read_vocab(path), lowercase=lowercase, special_tokens=special_tokens)

    def save(self, path: str | os.PathLike) -> None:
        """Write BERT's vocab.txt: one token per line, line number = id."""
        write_vocab(self.vocab, path)

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first: 'unaffable' -> un ##aff ##able; any unmatched part: [UNK]."""
        if len(word) > MAX_WORD_CHARS:
            return (self.unk_id,)
        get, ids, start = self.token_to_id.get, [], 0
        while start < len(word):
            end = min(len(word), start + self._max_piece)
            while end > start:
                i = get(word[start:end] if start == 0 else "##" + word[start:end])
                if i is not None:
                    break
                end -= 1
            else:  # not even one character matched: the whole word is unknown
                return (self.unk_id,)
            ids.append(i)
            start = end
        return tuple(ids)

    def encode(self, text: str) -> list[int]:
        """The ids of text: special tokens whole, every other word through WordPiece."""
        if not isinstance(text, str):
            raise ValueError(f"encode() takes a str, got {type(text).__name__}; decode bytes to "
                             "text first")
        parts, ids, lookup = _split_special(text, self._special_re), [], self._cache.__getitem__
        for k, part in enumerate(parts):
            if k % 2:  # odd positions are the special tokens found by the split
                ids.append(self.token_to_id[part])
            elif part:
                words = pre_tokenize(part, self.lowercase)
                ids += itertools.chain.from_iterable(map(lookup, words))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The tokens of text as strings ('un', '##aff', ...): encode, then look the ids up."""
        return [self.vocab[i] for i in self.encode(text)]

    def decode(self, ids: list[int]) -> str:
        """Join the pieces with spaces, gluing `##` pieces to the previous one (as BERT's decoder).

        This is not the original text: case, accents and the spacing around punctuation are gone.
        """
        tokens = []
        for i in ids:
            try:
                i = operator.index(i)  # any integer type (numpy, torch) but not floats or strings
            except TypeError:
                raise ValueError(f"unknown token id {i!r}: ids must be integers") from None
            if not 0 <= i < len(self.vocab):
                raise ValueError(f"unknown token id {i}: ids must be in [0, {len(self.vocab)})")
            tokens.append(self.vocab[i])
        return " ".join(tokens).replace(" ##", "").strip()


def read_vocab(path: str | os.PathLike) -> list[str]:
    """Read a BERT vocab.txt (one token per line, UTF-8)."""
    lines = read_text(path, "vocab file (a vocab.txt with one token per line)").split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    return lines


def write_vocab(vocab: list[str], path: str | os.PathLike) -> None:
    """vocab.txt, one token per line, written atomically."""
    atomic_write(path, lambda f: f.write("".join(token + "\n" for token in vocab).encode("utf-8")))


# ----------------------------------------------------------------------------- training
def _checked_specials(text: str, scoring: str, special_tokens: list[str] | None) -> list[str]:
    """The special tokens to train with (BERT's by default), after checking train_wordpiece's
    arguments, so that a wrong one fails at once with a line that says how to fix it."""
    if not isinstance(text, str):
        raise ValueError(f"text must be the corpus as a str, got {type(text).__name__}; use "
                         "read_text(path)")
    if len(text) < 4096 and "\n" not in text and os.path.isfile(text):
        raise ValueError(f"text {text!r} is the name of a file, not a corpus; pass "
                         f"read_text({text!r})")
    if scoring not in SCORINGS:
        raise ValueError(f"scoring={scoring!r} is not one of {SCORINGS}")
    special_tokens = list(BERT_SPECIAL_TOKENS if special_tokens is None else special_tokens)
    if UNK not in special_tokens:
        raise ValueError(f"special_tokens {special_tokens} must contain {UNK}: the tokenizer "
                         "needs it")
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens {special_tokens} has duplicates")
    return special_tokens


def _count_words(text: str, lowercase: bool, special_tokens: list[str]) -> Counter[str]:
    """word -> count in the corpus, special tokens and words over 100 characters left out.

    Merges then work on unique words weighted by their count. Special tokens are already in the
    vocab, and a word over 100 characters always tokenizes to [UNK]: learning pieces from them
    would waste the vocab.
    """
    word_counts: Counter[str] = Counter()
    for k, part in enumerate(_split_special(text, _special_regex(special_tokens))):
        if k % 2 == 0:
            word_counts.update(pre_tokenize(part, lowercase))
    word_counts = Counter({w: c for w, c in word_counts.items() if len(w) <= MAX_WORD_CHARS})
    if not word_counts:
        raise ValueError("the corpus has no words (outside special tokens, of at most 100 "
                         "characters) to learn from; give it some text")
    return word_counts


def _alphabet(words: Counter[str], special_tokens: list[str], vocab_size: int) -> list[str]:
    """The starting vocab: the special tokens, then every character on its own (so that any can
    start a word) and as a `##` continuation where it occurs as one, as Hugging Face builds it."""
    vocab = list(special_tokens)
    starts = sorted({ch for w in words for ch in w})
    continuations = sorted({"##" + ch for w in words for ch in w[1:]})
    vocab += [t for t in starts + continuations if t not in special_tokens]
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(special_tokens)} "
                         f"special tokens plus the {len(vocab) - len(special_tokens)} alphabet "
                         f"pieces of this corpus; use vocab_size >= {len(vocab)}")
    return vocab


class _PairTable:
    """The adjacent-pair statistics of the words' current segmentation, kept up to date
    incrementally by merge() (only the words that contain the merged pair change), and a heap
    that gives the best pair.

    A word is a str with one character per piece: chr(piece id). Then merging a pair everywhere in
    a word is str.replace (left to right, non-overlapping: exactly BPE's rule) and a pair is a
    2-character str, all at C speed. Comparing two pair strings compares their ids, first then
    second.
    """

    def __init__(self, words: list[str], counts: list[int], likelihood: bool):
        self.words, self.counts, self.likelihood = words, counts, likelihood
        # occurrences of each piece in the current segmentation (for the likelihood score)
        self.piece_freq: dict[str, int] = defaultdict(int)
        self.pair_count: dict[str, int] = defaultdict(int)
        self.where: dict[str, set[int]] = defaultdict(set)  # pair -> words that contain it
        self.pairs_of: dict[str, set[str]] = defaultdict(set)  # piece -> live pairs with it
        for wi, (seq, c) in enumerate(zip(words, counts)):
            for t in seq:
                self.piece_freq[t] += c
            for pair in map(operator.add, seq, seq[1:]):
                self.pair_count[pair] += c
                self.where[pair].add(wi)
        for pair in self.pair_count:
            self.pairs_of[pair[0]].add(pair)
            self.pairs_of[pair[1]].add(pair)
        # A max-heap with lazy updates. Every change that can raise a pair's key is pushed when it
        # happens (the pairs next to a merged piece; in likelihood mode also all pairs of a and b,
        # as freq(a) and freq(b) fell); every other change lowers it. So an entry may be too good
        # but never too bad: a popped entry that is no longer current goes back in with its
        # current key, and the first current one is the best pair.
        self.heap = [self.key(pair) for pair in self.pair_count]
        heapq.heapify(self.heap)

    def key(self, pair: str) -> tuple:
        """The pair's heap key: the smallest key is the best pair; ties go to the older pieces
        (smaller ids), as in Hugging Face."""
        count = self.pair_count[pair]
        if not self.likelihood:
            return (-count, pair)
        freq = self.piece_freq
        return (-count / (freq[pair[0]] * freq[pair[1]]), -count, pair)

    def best(self, min_frequency: int) -> str | None:
        """The best pair that occurs at least min_frequency times, or None when there is none.

        Pairs below min_frequency are dropped from the heap (should a count rise again, the pair
        is pushed again then).
        """
        while self.heap:
            entry = heapq.heappop(self.heap)
            pair = entry[-1]
            if pair not in self.pair_count or self.pair_count[pair] < min_frequency:
                continue
            current = self.key(pair)
            if entry == current:
                return pair
            heapq.heappush(self.heap, current)
        return None

    def merge(self, pair: str, new: str) -> None:
        """Replace the pair by the piece `new` in every word that has it, and update the counts,
        so that best() sees the new segmentation."""
        raised = set()  # pairs whose count went up: the new ones, next to a merged piece
        for wi in self.where.pop(pair):
            self._merge_word(wi, pair, new, raised)
        if self.likelihood:  # freq(a) and freq(b) fell: every pair with a or b now scores higher
            raised |= self.pairs_of[pair[0]] | self.pairs_of[pair[1]]
        for p in raised:
            if p in self.pair_count:
                heapq.heappush(self.heap, self.key(p))

    def _merge_word(self, wi: int, pair: str, new: str, raised: set[str]) -> None:
        """Merge the pair in word wi and add to `raised` the word's pairs with the new piece,
        whose counts went up, so that merge() pushes them on the heap."""
        seq, c = self.words[wi], self.counts[wi]
        out = seq.replace(pair, new)
        n = len(seq) - len(out)  # how many times the pair was merged in this word
        if n == 0:
            return  # a stale entry in `where`: this word lost the pair in an earlier merge
        pair_count, pairs_of, piece_freq = self.pair_count, self.pairs_of, self.piece_freq
        piece_freq[pair[0]] -= n * c
        piece_freq[pair[1]] -= n * c
        piece_freq[new] += n * c
        for p in map(operator.add, seq, seq[1:]):  # remove the word's old pairs ...
            pair_count[p] -= c
            if pair_count[p] == 0:
                del pair_count[p]
                pairs_of[p[0]].discard(p)
                pairs_of[p[1]].discard(p)
        for p in map(operator.add, out, out[1:]):  # ... and add its new ones
            if p not in pair_count:
                pairs_of[p[0]].add(p)
                pairs_of[p[1]].add(p)
            pair_count[p] += c
            if new in p:  # the other pairs were in the word before: count and `where` unchanged
                self.where[p].add(wi)
                raised.add(p)
        self.words[wi] = out


def train_wordpiece(text: str, vocab_size: int, lowercase: bool = True,
                    scoring: str = "frequency", special_tokens: list[str] | None = None,
                    min_frequency: int = 2, progress: bool = False) -> list[str]:
    """Learn a WordPiece vocab (id order: special tokens, then the alphabet, then learned pieces).

    Deterministic: the alphabet is sorted and ties go to the pair of smaller ids, so the same
    corpus and options give the same vocab byte for byte (Hugging Face's trainer numbers its
    alphabet in hash order). Merging stops at vocab_size or when the best pair occurs fewer than
    min_frequency times (a pair seen once is not a pattern).
    """
    special_tokens = _checked_specials(text, scoring, special_tokens)
    word_counts = _count_words(text, lowercase, special_tokens)
    vocab = _alphabet(word_counts, special_tokens, vocab_size)
    token_to_id = {t: i for i, t in enumerate(vocab)}
    words = [chr(token_to_id[w[0]]) + "".join(chr(token_to_id["##" + ch]) for ch in w[1:])
             for w in word_counts]
    pairs = _PairTable(words, list(word_counts.values()), likelihood=scoring == "likelihood")
    bar = tqdm(total=vocab_size, initial=len(vocab), desc="wordpiece merges", disable=not progress)
    while len(vocab) < vocab_size and (pair := pairs.best(min_frequency)) is not None:
        # b is always a `##` piece: it never starts a word
        merged = vocab[ord(pair[0])] + vocab[ord(pair[1])][2:]
        # should another pair ever spell the same piece (##ab+##c, ##a+##bc), it keeps its one id,
        # as in Hugging Face: a vocab.txt cannot list a token twice
        if merged not in token_to_id:
            token_to_id[merged] = len(vocab)
            vocab.append(merged)
            bar.update(1)
        pairs.merge(pair, chr(token_to_id[merged]))
    bar.close()
    if len(vocab) < vocab_size:
        print(f"wordpiece: stopped at {len(vocab)} tokens (< vocab_size={vocab_size}): no pair "
              f"left occurs at least min_frequency={min_frequency} times in this corpus",
              file=sys.stderr)
    return vocab


# ----------------------------------------------------------------------------- the CLI
def _median_time(fn, arg, samples: int = 7) -> float:
    """Seconds per call of fn(arg): warm-up first, then the median of several samples of enough
    calls to last ~20 ms each (one call of a microsecond function mostly measures the timer and
    call overhead)."""
    fn(arg)  # warm-up: caches filled, as in a long-running service
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        if time.perf_counter() - t0 >= 0.02:
            break
        n *= 2
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def _compare_text(wp: WordPieceTokenizer, gpt2, text: str) -> None:
    """Prints the two tokenizations of one text, their speed and whether each decodes back."""
    ids = gpt2.encode_ordinary(text)
    print(f"text: {text!r} ({len(text)} characters)\n")
    print(f"GPT-2 BPE  {len(ids)} tokens, "
          f"{_median_time(gpt2.encode_ordinary, text) * 1e6:.1f} us per call")
    print("  ids:   ", ids)
    print("  pieces:", [bpe.readable(gpt2.vocab[i]) for i in ids])
    wids = wp.encode(text)
    print(f"\nWordPiece  {len(wids)} tokens, {_median_time(wp.encode, text) * 1e6:.1f} us per call")
    print("  tokens:", wp.tokenize(text))
    print("  ids:   ", wids)
    print(f"\nround trip: BPE {gpt2.decode(ids) == text}, WordPiece {wp.decode(wids) == text} "
          f"(WordPiece decodes to {wp.decode(wids)!r})")


def _compare_file(wp: WordPieceTokenizer, gpt2, file: str) -> None:
    """Prints each tokenizer's tokens per character and throughput on a whole file."""
    body = read_text(file, "--file")
    mb = len(body.encode("utf-8")) / 1e6
    print(f"\nfile {file}: {len(body):,} characters, {mb:.2f} MB")
    for name, encode in (("GPT-2 BPE", gpt2.encode_ordinary), ("WordPiece", wp.encode)):
        ids = encode(body)
        seconds = _median_time(encode, body, samples=3)
        unk = ""
        if encode == wp.encode:
            unk = f", {ids.count(wp.unk_id) / max(len(ids), 1):.3%} [UNK]"
        print(f"  {name:<10} {len(ids):>10,} tokens  {len(ids) / max(len(body), 1):.3f} tokens/char"
              f"  {mb / seconds:6.2f} MB/s{unk}")


def compare(vocab_path: str, text: str | None, file: str | None, lowercase: bool = True) -> None:
    """Prints GPT-2's BPE and a WordPiece vocab side by side on a text and/or a whole file."""
    wp = WordPieceTokenizer.from_vocab_file(vocab_path, lowercase=lowercase)
    gpt2 = bpe.gpt2_tokenizer()
    if text is not None:
        _compare_text(wp, gpt2, text)
    if file is not None:
        _compare_file(wp, gpt2, file)


def _parser() -> argparse.ArgumentParser:
    """The command line: `train` and `compare` subcommands."""
    parser = ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="learn a vocab.txt from a UTF-8 text file")
    t.add_argument("--input", required=True)
    t.add_argument("--vocab_size", type=int, required=True)
    t.add_argument("--output", default="vocab.txt")
    t.add_argument("--cased", action="store_true",
                   help="keep case and accents (default: lowercase)")
    t.add_argument("--scoring", choices=SCORINGS, default="frequency")
    t.add_argument("--min_frequency", type=int, default=2)
    c = sub.add_parser("compare",
                       help="tokenize with GPT-2's BPE and with a WordPiece vocab, side by side")
    c.add_argument("--vocab", required=True)
    c.add_argument("--text")
    c.add_argument("--file", help="also measure tokens per character and throughput on this file")
    c.add_argument("--cased", action="store_true", help="the vocab is cased (default: lowercase)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Runs the command line; a bad input ends it with one `error: ...` line and status 1."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            corpus = read_text(args.input, "--input")
            t0 = time.perf_counter()
            vocab = train_wordpiece(corpus, args.vocab_size, lowercase=not args.cased,
                                    scoring=args.scoring, min_frequency=args.min_frequency,
                                    progress=True)
            write_vocab(vocab, args.output)
            print(f"wrote {len(vocab)} tokens to {args.output} in {time.perf_counter() - t0:.2f} s")
        else:
            if args.text is None and args.file is None:
                raise ValueError("compare needs --text and/or --file")
            compare(args.vocab, args.text, args.file, lowercase=not args.cased)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    with quiet_broken_pipe():
        main()
