"""bpe.py against its peers: tiktoken (GPT-2 ids), Hugging Face tokenizers (BpeTrainer merges, BPE encoding),
and its own naive reference trainer. No network: GPT-2's rank table comes from the install step's cache."""
import base64
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

import bpe
from tests.adapters import get_tokenizer, run_train_bpe

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
    "العربية من اليمين إلى اليسار. हिन्दी भी। ภาษาไทย Ελληνικά Русский",
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
    return tiktoken.Encoding(name="gpt2_offline", pat_str=bpe.GPT2_SPLIT_PATTERN, mergeable_ranks=gpt2_ranks(),
                             special_tokens={EOT: 50256})


def random_text(rng: random.Random, n: int) -> str:
    """Random text over an alphabet that stresses BPE: repeats, non-ASCII, whitespace runs, contractions."""
    alphabet = ["a", "b", "ab", "aa", " ", "  ", "\n", "\t", "é", "한", "字", "😀", "'s", "!", "1", "23", "e\u0301"]
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
@pytest.mark.parametrize("tie_break", ["bytes", "hf"])
def test_fast_trainer_equals_naive_on_random_corpora(tie_break):
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


def test_fast_trainer_equals_naive_on_real_text():
    text = SAMPLE.read_text(encoding="utf-8")
    for tie_break in ("bytes", "hf"):
        naive = bpe.train_bpe_naive(text, 256 + 1 + 300, [EOT], tie_break=tie_break)
        fast = bpe.train_bpe(text, 256 + 1 + 300, [EOT], tie_break=tie_break)
        assert list(fast.merges) == list(naive.merges) and len(fast.merges) == 300


def test_default_tie_break_prefers_greater_bytes():
    # pre-tokens "ab", " cd", " ab", " cd": (a, b), ( , c), (c, d) all count 2; (c, d) has the greatest bytes.
    # Then (a, b) and ( , cd) count 2: b"a" > b" ", so (a, b).
    tok = bpe.train_bpe("ab cd ab cd", 258)
    assert [tok.vocab[i] for i in sorted(tok.vocab)[256:]] == [b"cd", b"ab"]
    # with tie_break="hf" the smaller ids in GPT-2's byte order win: ' ' (id 220) is after the letters
    # (ids 64..89), so (a, b) = (64, 65) beats (c, d) = (66, 67)
    tok = bpe.train_bpe("ab cd ab cd", 258, tie_break="hf")
    assert [tok.vocab[i] for i in sorted(tok.vocab)[256:]] == [b"ab", b"cd"]


def hf_train(text: str, vocab_size: int, specials: list[str]):
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([text], trainer)
    return hf


def hf_unicode_to_byte() -> dict[str, int]:
    """Hugging Face's ByteLevel shows byte b as one printable character; GPT-2's bytes_to_unicode."""
    order = bpe.bytes_to_unicode_order()
    printable = [b for b in order if b in range(33, 127) or b in range(161, 173) or b in range(174, 256)]
    rest = order[len(printable):]
    return {**{chr(b): b for b in printable}, **{chr(256 + n): b for n, b in enumerate(rest)}}


def real_text() -> str:
    """Real text without a data download: our fixture plus the standard library's argparse source."""
    import argparse
    return SAMPLE.read_text(encoding="utf-8") + Path(argparse.__file__).read_text(encoding="utf-8")


def test_hf_tie_break_equals_tokenizers_bpe_trainer():
    # HF's trainer counts special tokens in the text as ordinary text ("<|", "endoftext", "|>"), we cut them
    # out (CS336's rule), so the text given to both holds none.
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
    """Encoding with our merges == Hugging Face's BPE model given the same merges (merge-rank semantics)."""
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
    assert bpe.count_pretokens_in_file(path, ["\nLine"], chunk_bytes=512) == bpe.count_pretokens(text, ["\nLine"])
    # without special tokens the cuts fall at line starts; counts equal the whole text's
    plain = "\n".join(SAMPLE.read_text(encoding="utf-8").replace(EOT, "") for _ in range(3))
    path.write_text(plain, encoding="utf-8")
    assert bpe.count_pretokens_in_file(path, chunk_bytes=300) == bpe.count_pretokens(plain)
    assert len(bpe._chunk_boundaries(path, [], 300)) > 10
    # a special token the file lacks must not make it one chunk: the line cuts remain
    assert bpe.count_pretokens_in_file(path, [EOT], chunk_bytes=300) == bpe.count_pretokens(plain, [EOT])
    assert len(bpe._chunk_boundaries(path, [EOT], 300)) > 10
    tok_file = bpe.train_bpe(path, 600, num_proc=2)
    assert tok_file.merges == bpe.train_bpe(plain, 600).merges
    with pytest.raises(ValueError, match="num_proc=0: give at least 1"):
        bpe.train_bpe(path, 600, num_proc=0)


def test_stops_when_nothing_left_to_merge():
    tok = bpe.train_bpe("ab ab", 1000)
    assert [tok.vocab[i] for i in range(256, len(tok.vocab))] == [b"ab", b" ab"]


def test_gpt4_pattern_matches_tiktoken_cl100k_pattern(gpt2):
    # GPT-2's ranks with cl100k's split pattern in tiktoken == our Tokenizer with GPT4_SPLIT_PATTERN
    enc = tiktoken.Encoding(name="gpt2_cl100k_split", pat_str=bpe.GPT4_SPLIT_PATTERN,
                            mergeable_ranks=gpt2_ranks(), special_tokens={EOT: 50256})
    import inspect
    import tiktoken_ext.openai_public as openai_public
    assert bpe.GPT4_SPLIT_PATTERN in inspect.getsource(openai_public.cl100k_base)  # cl100k's, verbatim
    assert bpe.GPT2_SPLIT_PATTERN == openai_public.r50k_pat_str
    tok = bpe.Tokenizer(gpt2.merges, gpt2.vocab, gpt2.special_tokens, bpe.GPT4_SPLIT_PATTERN)
    for t in MULTILINGUAL:
        assert tok.encode(t, allowed_special="all") == enc.encode(t, allowed_special="all"), t


@pytest.mark.parametrize("pattern", [bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
def test_ascii_fast_split_equals_regex(pattern):
    import regex
    rng = random.Random(11)
    pieces = [chr(c) for c in range(128)] + ["word", " ", "   ", "'s", "'LL", "\r\n", "\n\n", "12345", "\x1c"]
    for _ in range(2000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 50)))
        assert bpe.pretokenize(t, pattern) == regex.findall(pattern, t), repr(t)
    assert bpe.pretokenize("Hello  world!") == ["Hello", " ", " world", "!"]


@pytest.mark.parametrize("pattern", [bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
def test_mostly_ascii_split_equals_regex(pattern):
    # mostly ASCII text is cut between lines, and only the lines with other characters go through `regex`
    import regex
    rng = random.Random(12)
    ascii_pieces = [chr(c) for c in range(128)] + ["word", " ", "'s", "\n", "\n", "\r\n", "\n\n", "x\ny", "9\n7"]
    others = ["\u2019", "é", "한", "\u00a0", "\u2028", "\x85", "\u3000", "١"]
    cut = 0
    for _ in range(1000):
        t = "".join(rng.choice(ascii_pieces) for _ in range(rng.randint(50, 300)))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(t) + 1)
            t = t[:i] + rng.choice(others) + t[i:]
        cut += len(t.encode()) <= 1.05 * len(t) and len(bpe.LINE_CUT.split(t)) > 2
        assert bpe.pretokenize(t, pattern) == regex.findall(pattern, t), repr(t)
    assert cut > 500  # most took the line-cutting path


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
             range(0x4E00, 0x4E40), range(0x1F600, 0x1F650), [9, 10, 13, 32, 32, 32, 0x3000, 0x200D]]
    for _ in range(300):
        t = "".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 40)))
        assert gpt2.encode_ordinary(t) == tiktoken_gpt2.encode_ordinary(t), repr(t)


def test_gpt2_every_token_alone_matches_tiktoken(gpt2, tiktoken_gpt2):
    # tiktoken returns a whole token without running BPE, and so do we for learned merges: BPE on the token's
    # bytes must give the token, else the shortcut would change ids
    texts = {i: bpe.readable(t) for i, t in gpt2.vocab.items() if i != 50256}
    texts = {i: t for i, t in texts.items() if isinstance(t, str)}
    assert len(texts) > 45_000
    for i, t in texts.items():
        assert gpt2._bpe(t) == (i,), repr(t)
        assert gpt2.encode_ordinary(t) == tiktoken_gpt2.encode_ordinary(t), repr(t)


def test_whole_token_shortcut_only_where_bpe_gets_there():
    from tokenizers import Tokenizer as HFTokenizer, models

    # merges b+c, a+b, ab+c: "abc" is a token, but BPE on "abc" merges b+c first and stops at [a, bc]
    merges = [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    tok = bpe.Tokenizer(merges, vocab)
    assert tok.encode("abc") == [ord("a"), 256] and tok.encode("ab") == [257]
    hf = HFTokenizer(models.BPE({"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4, "abc": 5},
                                [("b", "c"), ("a", "b"), ("ab", "c")]))
    assert hf.encode("abc").tokens == ["a", "bc"]  # Hugging Face's BPE agrees
    tt = tiktoken.Encoding(name="toy", pat_str=r"\S+", special_tokens={},
                           mergeable_ranks={bytes([i]): i for i in range(256)} | {b"bc": 256, b"ab": 257, b"abc": 258})
    assert tt.encode("abc") == [258]  # tiktoken's whole-token rule would differ here


@pytest.mark.parametrize("pattern", [bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
def test_trained_tokens_are_reached_by_bpe(pattern):
    # why the whole-token rule is exact for trained vocabularies: BPE on a token's own bytes ends at the token
    rng = random.Random(7)
    texts = [random_text(rng, 400) for _ in range(20)] + [SAMPLE.read_text(encoding="utf-8")]
    for text in texts:
        tok = bpe.train_bpe(text, 256 + 200, [EOT], pattern)
        tokens = {i: bpe.readable(t) for i, t in tok.vocab.items() if i not in tok.special_tokens.values()}
        tokens = {i: t for i, t in tokens.items() if isinstance(t, str)}  # half a character is never a pre-token
        assert len(tokens) > 100 and all(tok._bpe(t) == (i,) for i, t in tokens.items())
        assert all(tok.encode_ordinary(t) == [i] for i, t in tokens.items() if bpe.pretokenize(t, pattern) == [t])


def test_gpt2_decode_matches_tiktoken_on_invalid_utf8(gpt2, tiktoken_gpt2):
    ids = gpt2.encode("🤗 한")
    for cut in range(len(ids) + 1):  # half of a multi-byte character decodes to U+FFFD
        assert gpt2.decode(ids[:cut]) == tiktoken_gpt2.decode(ids[:cut])
        assert gpt2.decode_bytes(ids[:cut]) == tiktoken_gpt2.decode_bytes(ids[:cut])
    assert "\ufffd" in gpt2.decode(ids[:2])


def test_load_tokenizer_gpt2(gpt2):
    assert bpe.load_tokenizer("gpt2") is gpt2  # cached per process
    assert gpt2.special_tokens == {EOT: 50256} and gpt2.encode(EOT, allowed_special="all") == [50256]


def test_gpt2_cache_is_verified(tmp_path, monkeypatch):
    gpt2_ranks()  # fails, naming the install command, if the cache is missing
    data = bpe.gpt2_ranks_path().read_bytes()
    monkeypatch.setenv("SCRATCHGPT_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download-gpt2"):
        bpe.gpt2_tokenizer.__wrapped__()  # uncached: no file in the new cache dir
    (tmp_path / "gpt2.tiktoken").write_bytes(data)
    assert bpe.download_gpt2() == tmp_path / "gpt2.tiktoken"  # already there and verified: no download
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
    assert merged == [b"ab"]  # "ab" three times, nothing else: no merge reaches into "<|endoftext|>"


# ----------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    specials = [EOT, "<| my special token |>", "<pad>"]
    rng = random.Random(3)
    text = specials[1].join(random_text(rng, 200) for _ in range(10))
    tok = bpe.train_bpe(text, 256 + 3 + 150, specials, pattern=bpe.GPT4_SPLIT_PATTERN)
    assert any(isinstance(bpe.readable(v), bytes) for v in tok.vocab.values())  # some are partial characters
    model = tok.save(tmp_path / "tok")
    assert model.name == "tokenizer.bpe" and (tmp_path / "tok" / "vocab.txt").is_file()
    for back in (bpe.Tokenizer.load(tmp_path / "tok"), bpe.Tokenizer.load(model), bpe.Tokenizer.loads(tok.dumps()),
                 bpe.load_tokenizer(str(tmp_path / "tok"))):
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
    lines += [random_text(rng, rng.randint(0, 30)) + rng.choice(["\n", " \n", "\n\n", "", " "]) for _ in range(400)]
    text = "".join(lines)
    want = tok.encode(text, allowed_special="all")
    # a small buffer forces hundreds of cuts; a file object is an iterable of lines
    assert list(tok.encode_iterable(lines, allowed_special="all", buffer_chars=64)) == want
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(tok.encode_iterable(f, allowed_special="all", buffer_chars=256)) == want
    # no safe cut at all (no spaces, no newlines): the buffer grows, the ids stay right
    chunks = ["分词器把文本变成整数" * 3] * 40
    assert list(tok.encode_iterable(chunks, buffer_chars=64)) == tok.encode("".join(chunks))


def test_encode_iterable_is_lazy(gpt2):
    endless = itertools.cycle(["The same line again, and again.\n"])
    first = list(itertools.islice(gpt2.encode_iterable(endless), 1000))
    one = gpt2.encode("The same line again, and again.\n")
    assert first[:len(one) * 10] == one * 10


# ----------------------------------------------------------------------------- adapters (CS336 semantics)
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
        "badmerge.bpe": (good.replace(f"merge {next(iter(tok.merges))[0]} ", "merge 98 ", 1), "corrupt"),
        "nopattern.bpe": ("\n".join(l for l in good.split("\n") if not l.startswith("pattern")), "no 'pattern'"),
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


# ----------------------------------------------------------------------------- command line
def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "bpe.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_train_and_encode(tmp_path, tiktoken_gpt2):
    out = tmp_path / "tok"
    r = run_cli("train", "--input", str(SAMPLE), "--vocab-size", "400", "--special", EOT, "--out", str(out),
                "--num-proc", "1")
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
    for args, message in [
        (["train", "--input", str(tmp_path / "none.txt"), "--vocab-size", "300", "--out", str(tmp_path)], "not found"),
        (["train", "--input", str(bad), "--vocab-size", "300", "--out", str(tmp_path)], "byte offset 2"),
        (["train", "--input", str(SAMPLE), "--vocab-size", "10", "--out", str(tmp_path)], "too small"),
        (["encode", "--model", str(tmp_path / "nothing"), "--text", "x"], "no tokenizer at"),
    ]:
        r = run_cli(*args)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
