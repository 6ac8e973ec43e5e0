"""bpe.py against its peers: tiktoken (GPT-2 ids), Hugging Face tokenizers (BpeTrainer merges, BPE
encoding, tokenizer.json files), transformers (SmolLM2's GGUF tokenizer and chat template), and its
own naive reference trainer. No network: GPT-2's rank table and SmolLM2's GGUF file come from the
install step's cache."""
import base64
import itertools
import json
import multiprocessing
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import regex
import tiktoken

import bpe
from tests.adapters import get_hf_tokenizer, get_tokenizer, run_train_bpe

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "bpe_sample.txt"
EOT = "<|endoftext|>"

MULTILINGUAL = [
    "Hello world!! It's, I'm, we'll, they're, I've, he'd, DON'T, 'S 'll",
    "안녕하세요, 세계! 토크나이저는 바이트를 본다.",
    "你好，世界。分词器把文本变成整数。",
    "日本語とカタカナ、ひらがな。",
    "emoji 🤗🎉 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇰🇷 end",
    "combining e\u0301 a\u0308 o\u0302\u0323 n\u0303 and precomposed \u00e9 \u00e4",
    "def f(x):\n\treturn x ** 2  # squares\r\n\n    if x:\n        pass\n",
    "numbers 0 7 42 1000 65535 3.5e10 -12 +7 1,234,567.89 ½ ² Ⅻ ١٢٣ ४२",
    "   leading spaces, trailing spaces   ",
    " \t \n\n\n  \u00a0\u3000 \u2003mixed\u00a0whitespace \r\n\r\n ",
    "العربية من اليمين إلى اليسار. हिन्दी भी। "
    "ภาษาไทย Ελληνικά Русский",
    f"special {EOT} in the middle, {EOT}{EOT} twice, and at the end{EOT}",
    "a" * 300 + " " + "ab" * 200 + " " * 50 + "\n" * 20 + "1" * 40,
    "\x00\x01\x7f control \ufffd replacement \U0010ffff max",
]


def gpt2_ranks() -> dict[bytes, int]:
    path = bpe.gpt2_ranks_path()
    if not path.is_file():
        pytest.fail(f"GPT-2 rank table missing at {path}: run the README install command "
                    "(`pip install -r requirements-dev.txt && python bpe.py download-gpt2`)")
    ranks = {}
    for line in path.read_bytes().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


@pytest.fixture(scope="module")
def gpt2():
    gpt2_ranks()  # a clear failure message if the cache is missing
    return bpe.gpt2_tokenizer()


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    return tiktoken.Encoding(name="gpt2_offline", pat_str=bpe.GPT2_SPLIT_PATTERN,
                             mergeable_ranks=gpt2_ranks(), special_tokens={EOT: 50256})


def random_text(rng: random.Random, n: int) -> str:
    """Random text over an alphabet that stresses BPE: repeats, non-ASCII, whitespace runs,
    contractions."""
    alphabet = ["a", "b", "ab", "aa", " ", "  ", "\n", "\t", "é", "한", "字", "😀", "'s", "!", "1",
                "23", "e\u0301"]
    return "".join(rng.choice(alphabet) for _ in range(n))


# ----------------------------------------------------------------------------- teaching core
def test_get_stats_and_merge():
    assert bpe.get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    counts = {(1, 2): 5}
    bpe.get_stats([1, 2], counts)
    assert counts == {(1, 2): 6}
    assert bpe.merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert bpe.merge([5, 5, 5], (5, 5), 7) == [7, 5]  # left to right, no overlap
    assert bpe.merge([], (1, 2), 9) == []


def test_byte_order_matches_gpt2(gpt2):
    # GPT-2's byte ids are a permutation: '!' is 0 and space is 220
    order = bpe.bytes_to_unicode_order()
    assert sorted(order) == list(range(256))
    assert [gpt2.vocab[i] for i in range(256)] == [bytes([b]) for b in order]
    assert gpt2.encode(" ") == [220] and gpt2.encode("!") == [0]


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("numpy_words", [10**9, 1])  # merges by the loop alone, by numpy alone
@pytest.mark.parametrize("tie_break", ["bytes", "hf"])
def test_fast_trainer_equals_naive_on_random_corpora(tie_break, numpy_words, monkeypatch):
    monkeypatch.setattr(bpe, "NUMPY_MERGE_WORDS", numpy_words)
    rng = random.Random(1234)
    for trial in range(150):
        specials = rng.choice([[], [EOT], [EOT, "<pad>", "<| a b |>"]])
        parts = [random_text(rng, rng.randint(1, 60)) for _ in range(rng.randint(1, 4))]
        sep = specials[rng.randrange(len(specials))] if specials else ""
        text = sep.join(parts)
        pattern = rng.choice([bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
        vocab_size = 256 + len(specials) + rng.randint(0, 60)
        try:
            naive = bpe.train_bpe_naive(text, vocab_size, specials, pattern, tie_break)
        except ValueError:
            assert not bpe.count_pretokens(text, specials, pattern)  # only an empty corpus may fail
            continue
        fast = bpe.train_bpe(text, vocab_size, specials, pattern, tie_break)
        assert fast.merges == naive.merges, (trial, text)
        assert fast.vocab == naive.vocab and fast.special_tokens == naive.special_tokens


def test_numpy_merge_equals_the_loop_word_for_word(monkeypatch):
    # one merge, made by _merge_words's loop and by _merge_words_numpy from the same state: runs of
    # the pair's tokens (a a a a, a b a b), words listed twice, words that lost the pair, non-ASCII
    rng = random.Random(5)
    alphabet = ["a", "b", "c", "\u00e9", "\u4e00", chr(300), chr(0xD800), chr(70_000)]
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    words += ["aaaa", "abab", "aaa", "ab", "ba", "b\u00e9ab"]
    counts = [rng.randint(1, 5) for _ in words]
    met_runs = 0
    for pair in ["ab", "aa", "\u00e9a", "a\u4e00", chr(0xD800) + chr(70_000)]:
        results = []
        for numpy_words in (10**9, 1):
            monkeypatch.setattr(bpe, "NUMPY_MERGE_WORDS", numpy_words)
            w = list(words)
            pair_counts, where = bpe._byte_pairs([], [])
            for wi, word in enumerate(w):  # every pair of every word, as the trainer starts
                for i in range(len(word) - 1):
                    pair_counts[word[i:i + 2]] += counts[wi]
                    where[word[i:i + 2]].append(wi)
            where[pair] += where[pair][:50] + [len(w) - 1]  # listed twice; one without it
            born = bpe._merge_words(pair, chr(400), w, counts, pair_counts, where)
            listed = {p: sorted(set(ws if isinstance(ws, list) else ws[0][ws[1]:ws[2]].tolist()))
                      for p, ws in where.items()}  # (numpy's are (array, start, end))
            results.append((born, dict(pair_counts), w, listed))
        assert results[0] == results[1], pair
        assert results[0][0]  # pairs were born
        met_runs += any(chr(400) * 2 in word for word in results[0][2])  # a b a b -> C C
    assert met_runs


def test_fast_trainer_equals_naive_on_real_text():
    text = SAMPLE.read_text(encoding="utf-8")
    for tie_break in ("bytes", "hf"):
        naive = bpe.train_bpe_naive(text, 256 + 1 + 300, [EOT], tie_break=tie_break)
        fast = bpe.train_bpe(text, 256 + 1 + 300, [EOT], tie_break=tie_break)
        assert list(fast.merges) == list(naive.merges) and len(fast.merges) == 300


def test_default_tie_break_prefers_greater_bytes():
    # pre-tokens "ab", " cd", " ab", " cd": (a, b), ( , c), (c, d) all count 2; (c, d) has the
    # greatest bytes. Then (a, b) and ( , cd) count 2: b"a" > b" ", so (a, b).
    tok = bpe.train_bpe("ab cd ab cd", 258)
    assert [tok.vocab[i] for i in sorted(tok.vocab)[256:]] == [b"cd", b"ab"]
    # with tie_break="hf" the smaller ids in GPT-2's byte order win: ' ' (id 220) is after the
    # letters (ids 64..89), so (a, b) = (64, 65) beats (c, d) = (66, 67)
    tok = bpe.train_bpe("ab cd ab cd", 258, tie_break="hf")
    assert [tok.vocab[i] for i in sorted(tok.vocab)[256:]] == [b"ab", b"cd"]


def hf_train(text: str, vocab_size: int, specials: list[str]):
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([text], trainer)
    return hf


def hf_unicode_to_byte() -> dict[str, int]:
    """Hugging Face's ByteLevel shows byte b as one printable character: GPT-2's
    bytes_to_unicode."""
    order = bpe.bytes_to_unicode_order()
    printable = [b for b in order
                 if b in range(33, 127) or b in range(161, 173) or b in range(174, 256)]
    rest = order[len(printable):]
    return {**{chr(b): b for b in printable}, **{chr(256 + n): b for n, b in enumerate(rest)}}


def real_text() -> str:
    """Real text without a data download: our fixture plus the standard library's argparse
    source."""
    import argparse
    return SAMPLE.read_text(encoding="utf-8") + Path(argparse.__file__).read_text(encoding="utf-8")


def test_hf_tie_break_equals_tokenizers_bpe_trainer():
    # HF's trainer counts special tokens in the text as ordinary text ("<|", "endoftext", "|>"), we
    # cut them out (CS336's rule), so the text given to both holds none.
    text, vocab_size = real_text().replace(EOT, "\n"), 1500
    hf = hf_train(text, vocab_size, [EOT])
    u2b = hf_unicode_to_byte()
    to_bytes = lambda s: bytes(u2b[c] for c in s)
    hf_merges = [(to_bytes(a), to_bytes(b)) for a, b in json.loads(hf.to_str())["model"]["merges"]]
    vocab, merges = run_train_bpe_text(text, vocab_size, [EOT], tie_break="hf")
    assert len(merges) == vocab_size - 257 == len(hf_merges)
    assert merges == hf_merges
    # the same vocabulary, with special tokens and bytes at different ids
    hf_vocab = {to_bytes(s) if s != EOT else EOT.encode() for s in hf.get_vocab()}
    assert set(vocab.values()) == hf_vocab


def run_train_bpe_text(text, vocab_size, specials, **kwargs):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.txt"
        path.write_text(text, encoding="utf-8")
        return run_train_bpe(path, vocab_size, specials, **kwargs)


def test_trained_tokenizer_encodes_like_hf_bpe():
    """Encoding with our merges == Hugging Face's BPE model given the same merges (merge-rank
    semantics)."""
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers

    text = real_text()
    tok = bpe.train_bpe(text, 1200, [EOT])
    u2b = hf_unicode_to_byte()
    b2u = {b: c for c, b in u2b.items()}
    to_str = lambda bs: "".join(b2u[b] for b in bs)
    hf_vocab = {to_str(v): i for i, v in tok.vocab.items() if i not in tok.special_tokens.values()}
    hf_merges = [(to_str(tok.vocab[a]), to_str(tok.vocab[b])) for a, b in tok.merges]
    hf = HFTokenizer(models.BPE(hf_vocab, hf_merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for t in MULTILINGUAL[:-3] + [text[:5000]]:
        t = t.replace(EOT, " ")
        assert tok.encode(t) == hf.encode(t).ids, t


def test_train_from_file_chunked_equals_in_memory(tmp_path):
    rng = random.Random(7)
    docs = [random_text(rng, rng.randint(5, 80)) + "\nLine two\nthree" for _ in range(300)]
    text = EOT.join(docs)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    want = bpe.count_pretokens(text, [EOT])
    # tiny chunks force many cuts, at special tokens; two worker processes
    assert bpe.count_pretokens_in_file(path, [EOT], chunk_bytes=512, num_proc=2) == want
    # a special token that holds a '\n' turns the line cuts off (it could straddle one)
    assert (bpe.count_pretokens_in_file(path, ["\nLine"], chunk_bytes=512)
            == bpe.count_pretokens(text, ["\nLine"]))
    # without special tokens the cuts fall at line starts; counts equal the whole text's
    plain = "\n".join(SAMPLE.read_text(encoding="utf-8").replace(EOT, "") for _ in range(3))
    path.write_text(plain, encoding="utf-8")
    assert bpe.count_pretokens_in_file(path, chunk_bytes=300) == bpe.count_pretokens(plain)
    assert len(bpe._chunk_boundaries(path, [], 300)) > 10
    # a special token the file lacks must not make it one chunk: the line cuts remain
    assert (bpe.count_pretokens_in_file(path, [EOT], chunk_bytes=300)
            == bpe.count_pretokens(plain, [EOT]))
    assert len(bpe._chunk_boundaries(path, [EOT], 300)) > 10
    tok_file = bpe.train_bpe(path, 600, num_proc=2)
    assert tok_file.merges == bpe.train_bpe(plain, 600).merges
    with pytest.raises(ValueError, match="num_proc=0: give at least 1"):
        bpe.train_bpe(path, 600, num_proc=0)


def test_a_worker_error_reaches_the_trainer_and_no_worker_is_left(tmp_path):
    lines = [f"line {i} of plain text\n" for i in range(400)]
    data = "".join(lines).encode()
    bad = data.index(b"line 300")
    path = tmp_path / "bad.txt"
    path.write_bytes(data[:bad] + b"\xff" + data[bad:])  # one byte that is not UTF-8
    for num_proc in (1, 3):
        with pytest.raises(ValueError, match=f"invalid byte b'\\\\xff' at byte offset {bad}"):
            bpe.count_pretokens_in_file(path, num_proc=num_proc, chunk_bytes=500)
        assert multiprocessing.active_children() == []


def test_a_worker_that_dies_is_an_error_not_a_hang(tmp_path, monkeypatch):
    path = tmp_path / "text.txt"
    path.write_text("".join(f"line {i} of plain text\n" for i in range(400)), encoding="utf-8")
    monkeypatch.setattr(bpe, "_count_chunks", lambda jobs, counts: os._exit(9))  # as if killed
    with pytest.raises(RuntimeError, match=r"a worker process died \(exit code 9"):
        bpe.count_pretokens_in_file(path, num_proc=2, chunk_bytes=500)
    assert multiprocessing.active_children() == []


def test_stops_when_nothing_left_to_merge():
    tok = bpe.train_bpe("ab ab", 1000)
    assert [tok.vocab[i] for i in range(256, len(tok.vocab))] == [b"ab", b" ab"]


def test_gpt4_pattern_matches_tiktoken_cl100k_pattern(gpt2):
    # GPT-2's ranks with cl100k's split pattern in tiktoken == our Tokenizer with GPT4_SPLIT_PATTERN
    enc = tiktoken.Encoding(name="gpt2_cl100k_split", pat_str=bpe.GPT4_SPLIT_PATTERN,
                            mergeable_ranks=gpt2_ranks(), special_tokens={EOT: 50256})
    import inspect
    import tiktoken_ext.openai_public as openai_public
    # cl100k's, verbatim
    assert bpe.GPT4_SPLIT_PATTERN in inspect.getsource(openai_public.cl100k_base)
    assert bpe.GPT2_SPLIT_PATTERN == openai_public.r50k_pat_str
    tok = bpe.Tokenizer(gpt2.merges, gpt2.vocab, gpt2.special_tokens, bpe.GPT4_SPLIT_PATTERN)
    for t in MULTILINGUAL:
        assert tok.encode(t, allowed_special="all") == enc.encode(t, allowed_special="all"), t


@pytest.mark.parametrize("pattern", bpe.FAST_PATTERNS)
def test_fast_split_equals_regex(pattern):
    # the `re` splitter against `regex` on the pattern as written: every character below U+10000
    # in a few contexts, then random text of ASCII, other scripts, odd spaces and a few emoji
    import regex
    bmp = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    every = "".join(f"'{c}x {c}{c} 1{c}\n{c}  {c}'" for c in bmp)
    assert bpe.pretokenize(every, pattern) == regex.findall(pattern, every)
    rng = random.Random(11)
    pieces = [chr(c) for c in range(128)] + ["word", " ", "   ", "'s", "'LL", "\r\n", "\n\n",
                                             "12345", "\x1c", "\u2019", "é", "한", "\u00a0",
                                             "\u2028", "\x85", "\u3000", "١", "²", "ſ", "😀"]
    astral = 0
    for _ in range(2000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 50)))
        astral += "😀" in t  # these take `regex`
        assert bpe.pretokenize(t, pattern) == regex.findall(pattern, t), repr(t)
    assert 100 < astral < 1900  # both paths taken often
    assert bpe.pretokenize("Hello  world!") == ["Hello", " ", " world", "!"]


# ----------------------------------------------------------------------------- GPT-2 parity
def test_gpt2_parity_multilingual(gpt2, tiktoken_gpt2):
    assert gpt2.n_vocab == tiktoken_gpt2.n_vocab == 50257 and len(gpt2.merges) == 50000
    for t in MULTILINGUAL + [SAMPLE.read_text(encoding="utf-8")]:
        ids = gpt2.encode(t, allowed_special="all")
        assert ids == tiktoken_gpt2.encode(t, allowed_special="all"), t
        assert gpt2.encode_ordinary(t) == tiktoken_gpt2.encode_ordinary(t)
        assert gpt2.decode(ids) == t


def test_gpt2_parity_random_unicode(gpt2, tiktoken_gpt2):
    rng = random.Random(0)
    pools = [range(0x20, 0x7F), range(0xA0, 0x250), range(0x300, 0x370), range(0xAC00, 0xAC40),
             range(0x4E00, 0x4E40), range(0x1F600, 0x1F650),
             [9, 10, 13, 32, 32, 32, 0x3000, 0x200D]]
    for _ in range(300):
        t = "".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 40)))
        assert gpt2.encode_ordinary(t) == tiktoken_gpt2.encode_ordinary(t), repr(t)


def test_gpt2_every_token_alone_matches_tiktoken(gpt2, tiktoken_gpt2):
    # tiktoken returns a whole token without running BPE, and so do we for learned merges: BPE on
    # the token's bytes must give the token, else the shortcut would change ids
    texts = {i: bpe.readable(t) for i, t in gpt2.vocab.items() if i != 50256}
    texts = {i: t for i, t in texts.items() if isinstance(t, str)}
    assert len(texts) > 45_000
    for i, t in texts.items():
        assert gpt2._bpe(t) == (i,), repr(t)
        assert gpt2.encode_ordinary(t) == tiktoken_gpt2.encode_ordinary(t), repr(t)


def test_whole_token_shortcut_only_where_bpe_gets_there():
    from tokenizers import Tokenizer as HFTokenizer, models

    # merges b+c, a+b, ab+c: "abc" is a token, but BPE on "abc" merges b+c first and stops at
    # [a, bc]
    merges = [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    tok = bpe.Tokenizer(merges, vocab)
    assert tok.encode("abc") == [ord("a"), 256] and tok.encode("ab") == [257]
    hf = HFTokenizer(models.BPE({"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4, "abc": 5},
                                [("b", "c"), ("a", "b"), ("ab", "c")]))
    assert hf.encode("abc").tokens == ["a", "bc"]  # Hugging Face's BPE agrees
    tt = tiktoken.Encoding(name="toy", pat_str=r"\S+", special_tokens={},
                           mergeable_ranks={bytes([i]): i for i in range(256)}
                           | {b"bc": 256, b"ab": 257, b"abc": 258})
    assert tt.encode("abc") == [258]  # tiktoken's whole-token rule would differ here


@pytest.mark.parametrize("pattern", [bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
def test_trained_tokens_are_reached_by_bpe(pattern):
    # why the whole-token rule is exact for trained vocabularies: BPE on a token's own bytes ends
    # at the token
    rng = random.Random(7)
    texts = [random_text(rng, 400) for _ in range(20)] + [SAMPLE.read_text(encoding="utf-8")]
    for text in texts:
        tok = bpe.train_bpe(text, 256 + 200, [EOT], pattern)
        tokens = {i: bpe.readable(t) for i, t in tok.vocab.items()
                  if i not in tok.special_tokens.values()}
        # half a character is never a pre-token
        tokens = {i: t for i, t in tokens.items() if isinstance(t, str)}
        assert len(tokens) > 100 and all(tok._bpe(t) == (i,) for i, t in tokens.items())
        assert all(tok.encode_ordinary(t) == [i] for i, t in tokens.items()
                   if bpe.pretokenize(t, pattern) == [t])


def test_gpt2_decode_matches_tiktoken_on_invalid_utf8(gpt2, tiktoken_gpt2):
    ids = gpt2.encode("🤗 한")
    for cut in range(len(ids) + 1):  # half of a multi-byte character decodes to U+FFFD
        assert gpt2.decode(ids[:cut]) == tiktoken_gpt2.decode(ids[:cut])
        assert gpt2.decode_bytes(ids[:cut]) == tiktoken_gpt2.decode_bytes(ids[:cut])
    assert "\ufffd" in gpt2.decode(ids[:2])


def test_load_tokenizer_gpt2(gpt2):
    assert bpe.load_tokenizer("gpt2") is gpt2  # cached per process
    assert gpt2.special_tokens == {EOT: 50256}
    assert gpt2.encode(EOT, allowed_special="all") == [50256]


def test_gpt2_cache_is_verified(tmp_path, monkeypatch):
    gpt2_ranks()  # fails, naming the install command, if the cache is missing
    data = bpe.gpt2_ranks_path().read_bytes()
    monkeypatch.setenv("SCRATCHGPT_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download-gpt2"):
        bpe.gpt2_tokenizer.__wrapped__()  # uncached: no file in the new cache dir
    (tmp_path / "gpt2.tiktoken").write_bytes(data)
    # already there and verified: no download
    assert bpe.download_gpt2() == tmp_path / "gpt2.tiktoken"
    (tmp_path / "gpt2.tiktoken").write_bytes(data[:-10])
    for fn in (bpe.download_gpt2, bpe.gpt2_tokenizer.__wrapped__):
        with pytest.raises(ValueError, match="sha256"):
            fn()


# ----------------------------------------------------------------------------- special tokens
def test_special_token_semantics_match_tiktoken(gpt2, tiktoken_gpt2):
    t = f"hi {EOT} there"
    with pytest.raises(ValueError, match=r"<\|endoftext\|>"):
        gpt2.encode(t)  # default: raise, as tiktoken does
    with pytest.raises(ValueError):
        tiktoken_gpt2.encode(t)
    assert gpt2.encode(t, allowed_special="all") == tiktoken_gpt2.encode(t, allowed_special="all")
    assert gpt2.encode(t, allowed_special={EOT}) == tiktoken_gpt2.encode(t, allowed_special={EOT})
    assert 50256 in gpt2.encode(t, allowed_special="all")
    assert gpt2.encode(t, allowed_special="none") == tiktoken_gpt2.encode(t, disallowed_special=())
    assert 50256 not in gpt2.encode(t, allowed_special="none")
    with pytest.raises(ValueError, match="unknown special"):
        gpt2.encode(t, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        gpt2.encode(t, allowed_special="some")


def test_overlapping_special_tokens_match_longest_first():
    double = EOT + EOT
    tok = bpe.train_bpe("some text " * 20, 300, [EOT, double])
    ids = tok.encode(f"a{double}b{EOT}c{EOT}{EOT}{EOT}", allowed_special="all")
    d, e = tok.special_tokens[double], tok.special_tokens[EOT]
    assert [i for i in ids if i in (d, e)] == [d, e, d, e]
    # only the allowed set becomes ids; another special token in the text raises
    with pytest.raises(ValueError, match="special token"):
        tok.encode(f"a{double}b", allowed_special={EOT})
    assert tok.encode(f"a{EOT}b", allowed_special={EOT}) == tok.encode("a") + [e] + tok.encode("b")


def test_training_never_merges_across_special_tokens():
    tok = bpe.train_bpe(f"ab{EOT}ab{EOT}ab", 256 + 1 + 10, [EOT])
    merged = [v for i, v in tok.vocab.items() if i >= 256 and i not in tok.special_tokens.values()]
    # "ab" three times, nothing else: no merge reaches into "<|endoftext|>"
    assert merged == [b"ab"]


# ----------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    specials = [EOT, "<| my special token |>", "<pad>"]
    rng = random.Random(3)
    text = specials[1].join(random_text(rng, 200) for _ in range(10))
    tok = bpe.train_bpe(text, 256 + 3 + 150, specials, pattern=bpe.GPT4_SPLIT_PATTERN)
    # some are partial characters
    assert any(isinstance(bpe.readable(v), bytes) for v in tok.vocab.values())
    model = tok.save(tmp_path / "tok")
    assert model.name == "tokenizer.bpe" and (tmp_path / "tok" / "vocab.txt").is_file()
    for back in (bpe.Tokenizer.load(tmp_path / "tok"), bpe.Tokenizer.load(model),
                 bpe.Tokenizer.loads(tok.dumps()), bpe.load_tokenizer(str(tmp_path / "tok"))):
        assert back.vocab == tok.vocab and back.merges == tok.merges
        assert list(back.merges) == list(tok.merges)  # merge order is the model
        assert back.special_tokens == tok.special_tokens and back.pattern == tok.pattern
        assert back.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    listing = (tmp_path / "tok" / "vocab.txt").read_text(encoding="utf-8")
    assert '"<| my special token |>"\t(special)' in listing and "\t= " in listing


def test_gpt2_dumps_loads_round_trip(gpt2, tiktoken_gpt2):
    back = bpe.Tokenizer.loads(gpt2.dumps())
    t = SAMPLE.read_text(encoding="utf-8")
    assert back.encode(t, allowed_special="all") == tiktoken_gpt2.encode(t, allowed_special="all")


# ----------------------------------------------------------------------------- encode_iterable
@pytest.mark.parametrize("pattern", [bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
def test_encode_iterable_equals_encode(gpt2, pattern, tmp_path):
    tok = bpe.Tokenizer(gpt2.merges, gpt2.vocab, gpt2.special_tokens, pattern)
    rng = random.Random(5)
    lines = MULTILINGUAL + SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    lines += [random_text(rng, rng.randint(0, 30)) + rng.choice(["\n", " \n", "\n\n", "", " "])
              for _ in range(400)]
    text = "".join(lines)
    want = tok.encode(text, allowed_special="all")
    # a small buffer forces hundreds of cuts; a text file is read in blocks of 64k characters
    assert list(tok.encode_iterable(lines, allowed_special="all", buffer_chars=64)) == want
    path = tmp_path / "t.txt"
    path.write_text(text * 24, encoding="utf-8")
    assert len(text * 24) > 3 * (1 << 16)
    with open(path, encoding="utf-8", newline="") as f:
        got = list(tok.encode_iterable(f, allowed_special="all", buffer_chars=256))
    assert got == tok.encode(text * 24, allowed_special="all")
    # no safe cut at all (no spaces, no newlines): the buffer grows, the ids stay right
    chunks = ["分词器把文本变成整数" * 3] * 40
    assert list(tok.encode_iterable(chunks, buffer_chars=64)) == tok.encode("".join(chunks))


def test_encode_iterable_is_lazy(gpt2):
    endless = itertools.cycle(["The same line again, and again.\n"])
    first = list(itertools.islice(gpt2.encode_iterable(endless), 1000))
    one = gpt2.encode("The same line again, and again.\n")
    assert first[:len(one) * 10] == one * 10


# ----------------------------------------------------------------------- adapters (CS336 semantics)
def test_adapters(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    vocab, merges = run_train_bpe(path, 500, [EOT])
    assert len(vocab) == 500 and len(merges) == 500 - 256 - 1
    assert EOT.encode() in vocab.values() and all(bytes([b]) in vocab.values() for b in range(256))
    assert all(a + b in vocab.values() for a, b in merges)
    tok = get_tokenizer(vocab, merges, [EOT])
    t = f"Bread {EOT} and 한국어 🤗"
    ids = tok.encode(t)  # special tokens always recognised
    assert tok.decode(ids) == t and [vocab[i] for i in ids].count(EOT.encode()) == 1
    assert list(tok.encode_iterable(iter([t[:9], t[9:]]))) == ids


# ----------------------------------------------------------------------------- bad input
def test_bad_vocab_size_and_empty_corpus(tmp_path):
    with pytest.raises(ValueError, match="at least 257"):
        bpe.train_bpe("hello", 256, [EOT])
    with pytest.raises(ValueError, match="at least 257"):
        bpe.train_bpe_naive("hello", 100, [EOT])
    with pytest.raises(ValueError, match="empty"):
        bpe.train_bpe("", 300)
    empty = tmp_path / "only_specials.txt"
    empty.write_text(EOT * 3, encoding="utf-8")
    with pytest.raises(ValueError, match="only_specials.txt is empty"):
        bpe.train_bpe(empty, 300, [EOT])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        bpe.train_bpe(tmp_path / "missing.txt", 300)
    with pytest.raises(ValueError, match="tie_break"):
        bpe.train_bpe("hello", 300, tie_break="random")
    with pytest.raises(ValueError, match=r"names a file.*Path"):
        bpe.train_bpe(str(SAMPLE), 300)


def test_non_utf8_file_names_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ok\n".encode("utf-8") * 10 + "na\u00efve".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt .*byte offset 92"):
        bpe.train_bpe(path, 300)


def test_decode_unknown_id(gpt2):
    with pytest.raises(ValueError, match="cannot decode id 50257"):
        gpt2.decode([31373, 50257])
    with pytest.raises(ValueError, match="cannot decode id -1"):
        gpt2.decode(iter([-1]))


def test_corrupt_or_foreign_model_files(tmp_path):
    tok = bpe.train_bpe("low lower lowest " * 5, 270)
    good = tok.dumps()
    cases = {
        "foreign.json": (json.dumps({"model": {"type": "BPE"}}), "not a scratchgpt BPE model"),
        "truncated.bpe": (good[: good.index("\nmerge ") + 9], "corrupt at line"),
        "badbase64.bpe": (good.replace("token 97 YQ==", "token 97 Y!=="), "corrupt at line"),
        "badmerge.bpe": (good.replace(f"merge {next(iter(tok.merges))[0]} ", "merge 98 ", 1),
                         "corrupt"),
        "nopattern.bpe": ("\n".join(l for l in good.split("\n") if not l.startswith("pattern")),
                          "no 'pattern'"),
        "nobytes.bpe": (good.replace("token 97 YQ==\n", ""), "corrupt"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            bpe.Tokenizer.load(tmp_path / name)
    (tmp_path / "binary.bpe").write_bytes(b"\x80\x81\xff\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        bpe.Tokenizer.load(tmp_path / "binary.bpe")
    with pytest.raises(FileNotFoundError, match="no tokenizer at"):
        bpe.load_tokenizer(str(tmp_path / "nowhere"))


def test_constructor_rejects_inconsistent_input():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError, match="does not match the vocab"):
        bpe.Tokenizer({(97, 98): 256}, {**vocab, 256: b"ba"})
    with pytest.raises(ValueError, match="single-byte"):
        bpe.Tokenizer({}, {i: bytes([i]) for i in range(200)})
    with pytest.raises(ValueError, match="not in the vocab"):
        bpe.Tokenizer([(b"a", b"b")], vocab)
    with pytest.raises(ValueError, match="unused id"):
        bpe.Tokenizer({}, vocab, {EOT: 97})
    with pytest.raises(ValueError, match="vocab is empty"):
        bpe.Tokenizer({}, {})
    with pytest.raises(ValueError, match="not a valid regex"):
        bpe.Tokenizer({}, vocab, pattern="(")


# ----------------------------------------------------------------------------- real tokenizers
# Peers: tokenizers (tokenizer.json files trained here, in each pre-tokenizer shape) and
# transformers (SmolLM2's GGUF). Our encode() is their encode with add_special_tokens=False.
SPECIALS = [EOT, "<|im_start|>", "<|im_end|>"]
CHAT = "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n1 2  3   4"
REAL_TEXTS = MULTILINGUAL + [CHAT, "x   4567  \n\n 89 a\t\t1 \u00a0\u00a02",
                             "e\u0301 \u212b \ufb01"]


def unicode_texts(seed: int, n: int) -> list[str]:
    """Random text over letters, digits, marks, CJK, emoji and runs of whitespace."""
    rng = random.Random(seed)
    pools = [range(0x20, 0x7F), range(0xA0, 0x250), range(0x300, 0x370), range(0xAC00, 0xAC40),
             range(0x4E00, 0x4E40), range(0x1F600, 0x1F650), range(0x30, 0x3A), range(0x660, 0x66A),
             [9, 10, 13, 32, 32, 32, 0x3000, 0x200D, 0xA0]]
    return ["".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 40)))
            for _ in range(n)]


HF_SHAPES = {  # name -> (pre_tokenizer, normalizer) as the tokenizer.json files of these models say
    "gpt2": lambda pt, nz, Regex: (pt.ByteLevel(add_prefix_space=False, use_regex=True), None),
    "llama3": lambda pt, nz, Regex: (pt.Sequence([
        pt.Split(Regex(bpe.LLAMA3_SPLIT_PATTERN), behavior="isolated"),
        pt.ByteLevel(add_prefix_space=False, use_regex=False)]), None),
    "qwen2": lambda pt, nz, Regex: (pt.Sequence([
        pt.Split(Regex(bpe.QWEN2_SPLIT_PATTERN), behavior="isolated"),
        pt.ByteLevel(add_prefix_space=False, use_regex=False)]), nz.NFC()),
    "smollm2": lambda pt, nz, Regex: (pt.Sequence([
        pt.Digits(individual_digits=True),
        pt.ByteLevel(add_prefix_space=False, use_regex=True)]), None),
}


@pytest.fixture(scope="module")
def hf_trained():
    """{shape: a tokenizers.Tokenizer trained here}, one per pre-tokenizer shape of HF_SHAPES."""
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, trainers

    corpus = SAMPLE.read_text(encoding="utf-8").replace(EOT, "\n") + "\n".join(MULTILINGUAL[:-3])
    out = {}
    for name, shape in HF_SHAPES.items():
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer, normalizer = shape(pre_tokenizers, normalizers, Regex)
        if normalizer is not None:
            hf.normalizer = normalizer
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator([corpus], trainer)
        out[name] = hf
    return out


def hf_ids(hf, text: str) -> list[int]:
    return hf.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("shape", list(HF_SHAPES))
def test_tokenizer_json_ids_equal_tokenizers(hf_trained, shape):
    hf = hf_trained[shape]
    tok = bpe.from_hf_json(json.loads(hf.to_str()))
    assert tok.special_tokens == {s: hf.token_to_id(s) for s in SPECIALS}
    for t in REAL_TEXTS + unicode_texts(1, 300):
        ids = tok.encode(t, allowed_special="all")
        assert ids == hf_ids(hf, t), (shape, t)
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=False)
    # cut where the split steps cut anyway, a stream encodes as the whole text does
    lines = "\n".join(REAL_TEXTS).splitlines(keepends=True)
    streamed = tok.encode_iterable(lines, allowed_special="all", buffer_chars=32)
    assert list(streamed) == hf_ids(hf, "".join(lines))
    # merges written as "a b" strings (older files) load the same tokenizer
    spec = json.loads(hf.to_str())
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    assert bpe.from_hf_json(spec).merges == tok.merges


def test_tokenizer_json_directory_with_config(hf_trained, tmp_path):
    hf = hf_trained["llama3"]
    hf.save(str(tmp_path / "tokenizer.json"))
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}...{% endfor %}"
    config = {"eos_token": {"content": "<|im_end|>"}, "chat_template": template}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    for spec in (tmp_path, tmp_path / "tokenizer.json"):
        tok = bpe.load_tokenizer(str(spec))
        assert tok.eot_id == hf.token_to_id("<|im_end|>") and tok.chat_template == template
        assert tok.encode(CHAT, allowed_special="all") == hf_ids(hf, CHAT)
    # without a config: <|endoftext|>, as GPT-2's files have it
    (tmp_path / "tokenizer_config.json").unlink()
    assert bpe.load_tokenizer(str(tmp_path)).eot_id == hf.token_to_id(EOT)
    peer = get_hf_tokenizer(tmp_path)
    assert peer.encode(CHAT) == hf_ids(hf, CHAT) and peer.decode(peer.encode(CHAT)) == CHAT


def test_ignore_merges_as_in_tokenizers():
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers

    # merges b+c, a+b, ab+c: BPE on "abc" stops at [a, bc]; ignore_merges takes the whole token
    chars = bpe.byte_level_chars()
    vocab = {chars[b]: i for i, b in enumerate(bpe.bytes_to_unicode_order())}
    vocab |= {"bc": 256, "ab": 257, "abc": 258}
    for ignore in (False, True):
        hf = HFTokenizer(models.BPE(vocab, [("b", "c"), ("a", "b"), ("ab", "c")],
                                    ignore_merges=ignore))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok = bpe.from_hf_json(json.loads(hf.to_str()))
        assert tok.ignore_merges == ignore
        for t in ["abc", "abc abcabc xabc", "ab bc"]:
            assert tok.encode(t) == hf_ids(hf, t), (ignore, t)
        back = bpe.Tokenizer.loads(tok.dumps())
        assert back.encode("abc") == hf_ids(hf, "abc")


def test_split_steps_keep_every_character():
    # a step's unmatched text is a piece too (Hugging Face's Split "Isolated"), so nothing is lost
    from tokenizers import Regex, pre_tokenizers

    steps = [r"\p{N}", r"[a-z]+"]
    hf = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(p), behavior="isolated")
                                  for p in steps])
    for t in ["ab12 cd!!3", "", "  ", "x9y"] + unicode_texts(3, 100):
        assert bpe.pretokenize(t, steps) == [p for p, _ in hf.pre_tokenize_str(t)], t
    digits_first = bpe.pretokenize("a  12", [bpe.DIGITS_SPLIT, bpe.GPT2_SPLIT_PATTERN])
    assert digits_first == ["a", "  ", "1", "2"] != bpe.pretokenize("a  12")


# -- SmolLM2's GGUF file against transformers
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2_path():
    from files import cache_dir

    path = cache_dir() / SMOLLM2
    if not path.is_file():
        pytest.fail(f"{SMOLLM2} missing at {path}: the install step downloads it")
    return path


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return bpe.load_gguf_tokenizer(smollm2_path)


@pytest.fixture(scope="module")
def hf_smollm2(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name)


@pytest.fixture(scope="module")
def smollm2_rule(hf_smollm2):
    """transformers' SmolLM2 tokenizer with SmolLM2's own pre-tokenizer put back.

    transformers' GGUF loader gives every byte-level GGUF GPT-2's ByteLevel pre-tokenizer; the
    file's tokenizer.ggml.pre "smollm" (SmolLM2's tokenizer.json; llama.cpp's llama-vocab.cpp)
    puts every digit alone first."""
    from tokenizers import Tokenizer as HFTokenizer, pre_tokenizers

    hf = HFTokenizer.from_str(hf_smollm2.backend_tokenizer.to_str())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return hf


def test_smollm2_gguf_ids_equal_transformers(smollm2, hf_smollm2, smollm2_rule):
    assert smollm2.n_vocab == len(hf_smollm2) and smollm2.eot_id == hf_smollm2.eos_token_id
    for s in SPECIALS:
        assert smollm2.special_tokens[s] == hf_smollm2.convert_tokens_to_ids(s)
    assert smollm2.chat_template == hf_smollm2.chat_template
    differ = 0
    for t in REAL_TEXTS + unicode_texts(4, 300) + ["a\x04b \x7f\x00 caf\xe9"]:
        ids = smollm2.encode(t, allowed_special="all")
        assert ids == hf_ids(smollm2_rule, t), t
        if regex.search(r"\s\p{N}", t):  # whitespace before a digit: the two rules may differ
            differ += ids != hf_smollm2.encode(t, add_special_tokens=False)
        else:
            assert ids == hf_smollm2.encode(t, add_special_tokens=False), t
        if "\x04" not in t:  # a byte SmolLM2's vocab lacks: dropped, as transformers drops it
            assert smollm2.decode(ids) == t == hf_smollm2.decode(ids)
    assert differ > 5


def test_smollm2_render_chat_equals_apply_chat_template(smollm2, hf_smollm2):
    conversations = [
        [{"role": "user", "content": "hi"}],
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "안녕\n\nand 🤗?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ""}],
        [{"role": "assistant", "content": "first"}, {"role": "system", "content": "late"}],
    ]
    for messages in conversations:
        for prompt in (True, False):
            text = smollm2.render_chat(messages, add_generation_prompt=prompt)
            want = hf_smollm2.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=prompt)
            assert text == want
            ids = hf_smollm2.apply_chat_template(messages, add_generation_prompt=prompt,
                                                 return_dict=False)
            assert smollm2.encode(text, allowed_special="all") == ids
    # the template's own default system message, read from its text
    assert "SmolLM" in bpe.chatml_default_system(smollm2.chat_template)
    with pytest.raises(ValueError, match="'role' and a 'content'"):
        smollm2.render_chat([{"role": "user"}])
    with pytest.raises(ValueError, match="no messages"):
        smollm2.render_chat([])


def test_smollm2_dumps_loads_and_hf_json(smollm2, smollm2_rule):
    from tokenizers import Tokenizer as HFTokenizer

    back = bpe.tokenizer_from_spec(bpe.tokenizer_spec(smollm2))
    assert back.split_steps == (bpe.DIGITS_SPLIT, bpe.GPT2_SPLIT_PATTERN)
    assert (back.eot_id, back.chat_template) == (smollm2.eot_id, smollm2.chat_template)
    exported = HFTokenizer.from_str(json.dumps(smollm2.to_hf_json()))
    for t in REAL_TEXTS + unicode_texts(5, 100) + ["a\x04b"]:
        want = hf_ids(smollm2_rule, t)
        assert back.encode(t, allowed_special="all") == want == hf_ids(exported, t)


# -- GGUF files written here, one per tokenizer.ggml.pre of the table
def write_gguf(path: Path, hf, pre: str, model: str = "gpt2", eos: str = "<|im_end|>") -> Path:
    """A GGUF file holding only hf's tokenizer, as llama.cpp's converter writes one."""
    import gguf

    spec = json.loads(hf.to_str())
    added = {t["id"] for t in spec["added_tokens"]}
    tokens = [hf.id_to_token(i) for i in range(hf.get_vocab_size())]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in added else 1 for i in range(len(tokens))])
    writer.add_token_merges([" ".join(m) for m in spec["model"]["merges"]])
    writer.add_eos_token_id(hf.token_to_id(eos))
    writer.add_chat_template("<|im_start|>{{ messages[0]['content'] }}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("pre,shape", [("gpt2", "gpt2"), ("smollm", "smollm2"),
                                       ("llama-bpe", "llama3"), ("qwen2", "qwen2")])
def test_gguf_pre_table_equals_tokenizers(hf_trained, tmp_path, pre, shape):
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_str(hf_trained[shape].to_str())
    hf.normalizer = None  # llama.cpp does not normalize (Qwen2's tokenizer.json asks for NFC)
    if pre == "llama-bpe":  # llama.cpp's Llama 3 rule, as Llama 3's tokenizer.json has it
        spec = json.loads(hf.to_str())
        spec["model"]["ignore_merges"] = True
        hf = HFTokenizer.from_str(json.dumps(spec))
    path = write_gguf(tmp_path / "tok.gguf", hf, pre)
    tok = bpe.load_tokenizer(str(path))
    assert tok.ignore_merges == (pre == "llama-bpe")
    assert tok.eot_id == hf.token_to_id("<|im_end|>")
    for t in REAL_TEXTS + unicode_texts(6, 200):
        assert tok.encode(t, allowed_special="all") == hf_ids(hf, t), (pre, t)
    assert get_hf_tokenizer(path).encode(CHAT) == hf_ids(hf, CHAT)


# -- to_hf_json
def test_to_hf_json_round_trip(gpt2, tiktoken_gpt2, hf_trained):
    from tokenizers import Tokenizer as HFTokenizer

    texts = REAL_TEXTS + [SAMPLE.read_text(encoding="utf-8")]
    exported = HFTokenizer.from_str(json.dumps(gpt2.to_hf_json()))
    for t in texts:
        assert hf_ids(exported, t) == tiktoken_gpt2.encode(t, allowed_special="all"), t
    # ours, trained with GPT-4's pattern (possessive quantifiers) and with split steps
    for pattern in (bpe.GPT4_SPLIT_PATTERN, (bpe.DIGITS_SPLIT, bpe.GPT4_SPLIT_PATTERN)):
        tok = bpe.train_bpe(real_text(), 800, SPECIALS, pattern)
        exported = HFTokenizer.from_str(json.dumps(tok.to_hf_json()))
        for t in texts + unicode_texts(7, 200):
            assert hf_ids(exported, t) == tok.encode(t, allowed_special="all"), t
    # loaded from tokenizer.json and written back: the same tokenizer, the same ids
    for shape, hf in hf_trained.items():
        tok = bpe.from_hf_json(json.loads(hf.to_str()))
        again = bpe.from_hf_json(tok.to_hf_json())
        assert (again.vocab, again.merges, again.special_tokens, again.pattern) == \
            (tok.vocab, tok.merges, tok.special_tokens, tok.pattern)
        exported = HFTokenizer.from_str(json.dumps(tok.to_hf_json()))
        for t in REAL_TEXTS + unicode_texts(8, 100):
            assert hf_ids(exported, t) == hf_ids(hf, t), (shape, t)


# -- the new state saves and loads
def test_eot_id_is_settable_and_saved(tmp_path):
    tok = bpe.train_bpe("low lower lowest " * 5, 270, SPECIALS)
    assert tok.eot_id == tok.special_tokens[EOT]
    tok.eot_id = tok.special_tokens["<|im_end|>"]
    tok.chat_template = "{{ '<|im_start|>' }}\n"
    back = bpe.Tokenizer.load(tok.save(tmp_path / "tok"))
    assert back.eot_id == tok.special_tokens["<|im_end|>"]
    assert back.chat_template == tok.chat_template
    tok.eot_id = None  # no end-of-text token at all, though <|endoftext|> is one
    assert bpe.Tokenizer.loads(tok.dumps()).eot_id is None
    with pytest.raises(ValueError, match="eot_id=99999 is not a token id"):
        tok.eot_id = 99999


def test_reads_the_old_format():
    # written by bpe.py before eot, chat template and split steps were saved (format 1)
    old = bpe.Tokenizer.load(ROOT / "tests" / "fixtures" / "bpe_v1.bpe")
    text = SAMPLE.read_text(encoding="utf-8")
    new = bpe.train_bpe(text, 256 + 1 + 40, [EOT])
    assert old.merges == new.merges and old.eot_id == new.special_tokens[EOT]
    assert old.encode(text, allowed_special="all") == new.encode(text, allowed_special="all")


# -- clear errors
def test_tokenizer_json_errors():
    from tokenizers import Tokenizer as HFTokenizer, models, normalizers, pre_tokenizers

    wordpiece = HFTokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    unigram = HFTokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0))
    for hf, kind in ((wordpiece, "WordPiece"), (unigram, "Unigram")):
        with pytest.raises(ValueError, match=f"model.type is '{kind}'"):
            bpe.from_hf_json(json.loads(hf.to_str()))
    alphabet = {c: i for i, c in enumerate(bpe.byte_level_chars().values())}
    base = HFTokenizer(models.BPE(alphabet, []))
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    cases = [("pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True), "add_prefix_space"),
             ("pre_tokenizer", pre_tokenizers.Metaspace(), "does not end with ByteLevel"),
             ("pre_tokenizer", pre_tokenizers.Sequence([
                 pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False)]),
              "step 'Whitespace' is not supported"),
             ("normalizer", normalizers.Lowercase(), "normalizer 'Lowercase'")]
    for field, value, message in cases:
        hf = HFTokenizer.from_str(base.to_str())
        setattr(hf, field, value)
        with pytest.raises(ValueError, match=message):
            bpe.from_hf_json(json.loads(hf.to_str()))
    spec = json.loads(base.to_str())
    spec["model"]["byte_fallback"] = True
    with pytest.raises(ValueError, match="model.byte_fallback"):
        bpe.from_hf_json(spec)


def test_gguf_errors(hf_trained, tmp_path, monkeypatch):
    hf = hf_trained["gpt2"]
    with pytest.raises(ValueError, match="tokenizer.ggml.pre 'made-up' is not in bpe.GGUF_PRE"):
        bpe.load_tokenizer(str(write_gguf(tmp_path / "pre.gguf", hf, "made-up")))
    with pytest.raises(ValueError, match="'llama' \\(a sentencepiece tokenizer\\)"):
        bpe.load_tokenizer(str(write_gguf(tmp_path / "spm.gguf", hf, "default", model="llama")))
    (tmp_path / "text.gguf").write_text("not a model", encoding="utf-8")
    with pytest.raises(ValueError, match="not a GGUF file"):
        bpe.load_tokenizer(str(tmp_path / "text.gguf"))
    with pytest.raises(FileNotFoundError, match="none.gguf"):
        bpe.load_tokenizer(str(tmp_path / "none.gguf"))
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed: import fails
    with pytest.raises(ImportError, match="pip install gguf"):
        bpe.load_tokenizer(str(tmp_path / "pre.gguf"))


# ----------------------------------------------------------------------------- command line
def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "bpe.py"), *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_train_and_encode(tmp_path, tiktoken_gpt2):
    out = tmp_path / "tok"
    r = run_cli("train", "--input", str(SAMPLE), "--vocab_size", "400", "--special", EOT,
                "--out", str(out), "--num_proc", "1")
    assert r.returncode == 0, r.stderr
    tok = bpe.Tokenizer.load(out)
    assert len(tok.vocab) == 400 and tok.merges == bpe.train_bpe(SAMPLE, 400, [EOT]).merges
    r = run_cli("encode", "--model", str(out), "--text", "Bread and water")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == str(tok.encode("Bread and water"))
    r = run_cli("encode", "--model", "gpt2", "--text", f"Hello world{EOT}")
    ids = tiktoken_gpt2.encode(f"Hello world{EOT}", allowed_special="all")
    assert r.returncode == 0 and r.stdout.splitlines() == [str(ids), str(["Hello", " world", EOT])]


def test_cli_errors_are_clean(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff")
    out = str(tmp_path / "tok")  # a directory of its own: tmp_path holds bad.txt
    for args, message in [
        (["train", "--input", str(tmp_path / "none.txt"), "--vocab_size", "300",
          "--out", out], "not found"),
        (["train", "--input", str(bad), "--vocab_size", "300", "--out", out],
         "byte offset 2"),
        (["train", "--input", str(SAMPLE), "--vocab_size", "10", "--out", out],
         "too small"),
        (["encode", "--model", str(tmp_path / "nothing"), "--text", "x"], "no tokenizer at"),
    ]:
        r = run_cli(*args)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_cli_decode_and_encode_file(tmp_path, tiktoken_gpt2):
    text = f"Hello world! 안녕{EOT}"
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    ids = tiktoken_gpt2.encode(text, allowed_special="all")
    r = run_cli("encode", "--model", "gpt2", "--file", str(path))
    assert r.returncode == 0 and r.stdout.splitlines()[0] == str(ids), r.stderr
    r = run_cli("decode", "--model", "gpt2", "--ids", str(ids))  # as `encode` printed them
    assert r.returncode == 0 and r.stdout == tiktoken_gpt2.decode(ids) + "\n", r.stderr
    assert bpe._parse_ids(",".join(map(str, ids))) == ids == bpe._parse_ids(str(ids))


def test_cli_errors_are_one_line(tmp_path):
    model = bpe.train_bpe("low lower lowest", 260).save(tmp_path / "tok")
    for args, message in [
        (["decode", "--model", "gpt2", "--ids", "1,x"], "--ids '1,x'"),
        (["decode", "--model", str(model), "--ids", "99999"], "cannot decode id 99999"),
        (["decode", "--model", "gpt2"], "--ids"),
        (["encode", "--model", "gpt2", "--text", "x", "--file", "f.txt"], "not allowed with"),
        (["encode", "--model", "gpt2"], "--text --file"),
        (["encode", "--model", "gpt2", "--file", str(tmp_path / "none.txt")], "none.txt"),
        (["encode", "--model", str(tmp_path / "x.gguf"), "--text", "x"], "x.gguf"),
        (["train", "--input", str(SAMPLE), "--vocab-size", "300", "--out", str(tmp_path)],
         "--vocab_size"),
    ]:
        r = run_cli(*args)
        assert r.returncode == 1 and r.stderr.startswith("error: "), r.stderr
        assert message in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
