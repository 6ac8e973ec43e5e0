"""bpe.Tokenizer's fast encoding paths against the readable one (`_bpe`) and against tiktoken:
`_bpe_heap` and `_bpe_stitched` (long pre-tokens), `_bpe_waves` (many new pre-tokens at once), the
bounded pre-token cache, encode_iterable's cuts, and GPT-2's cached merges. For GPT-2 and for a
tokenizer trained here."""
import hashlib
import json
import random
import string

import numpy as np
import pytest
import tiktoken

import bpe
from tests.test_bpe import EOT, MULTILINGUAL, SAMPLE, gpt2_ranks, random_text


@pytest.fixture(scope="module")
def gpt2():
    gpt2_ranks()  # a clear failure message if the cache is missing
    return bpe.gpt2_tokenizer()


def tiktoken_of(tok: bpe.Tokenizer) -> tiktoken.Encoding:
    """tiktoken with tok's ids as ranks (GPT-2's ids are its ranks)."""
    ranks = {v: i for i, v in tok.vocab.items() if i not in tok.special_tokens.values()}
    return tiktoken.Encoding(name="peer", pat_str=tok.pattern, mergeable_ranks=ranks,
                             special_tokens=dict(tok.special_tokens))


def long_runs(n: int, seed: int = 0) -> list[str]:
    """Single pre-tokens of about n characters: letters, digits, '=', mixed Unicode letters."""
    rng = random.Random(seed)
    return ["".join(rng.choice(string.ascii_letters) for _ in range(n)), "a" * n,
            "".join(rng.choice(string.digits) for _ in range(n)), "=" * n, "-=" * (n // 2),
            "".join(rng.choice("éaß한字яΩ") for _ in range(n))]


@pytest.fixture(scope="module")
def cases(gpt2):
    """{name: (tokenizer, the peer's encode)}: GPT-2 against tiktoken, and a tokenizer trained here
    (on text that holds long runs, so it has merges for them) against Hugging Face tokenizers."""
    from tokenizers import Tokenizer as HFTokenizer

    text = SAMPLE.read_text(encoding="utf-8") + " ".join(long_runs(300, seed=1)) * 3
    trained = bpe.train_bpe(text, 256 + 600, [EOT])
    hf = HFTokenizer.from_str(json.dumps(trained.to_hf_json()))
    return {"gpt2": (gpt2, lambda t: tiktoken_of(gpt2).encode(t, allowed_special="all")),
            "trained": (trained, lambda t: hf.encode(t).ids)}


def texts(rng: random.Random) -> list[str]:
    return (MULTILINGUAL + [SAMPLE.read_text(encoding="utf-8")]
            + [random_text(rng, 300) for _ in range(20)])


@pytest.mark.parametrize("which", ["gpt2", "trained"])
def test_heap_equals_readable_and_peer_on_long_runs(which, cases):
    tok, peer = cases[which]
    for run in long_runs(1500):
        assert bpe.pretokenize(run) == [run]
        assert list(tok._bpe_heap(run)) == list(tok._bpe(run)) == peer(run), run[:20]
    for run in long_runs(20_000, seed=2):  # the readable path would take seconds here
        assert tok.encode(run) == peer(run), run[:20]


@pytest.mark.parametrize("which", ["gpt2", "trained"])
@pytest.mark.parametrize("stitch", [3, 64])
def test_stitched_equals_readable_and_peer_on_random_ascii(which, stitch, cases, monkeypatch):
    # random digits: no pair of digits is outside every GPT-2 token, so nothing cuts them apart;
    # chunks of 3 characters glue at almost every token, often re-merging several on each side
    monkeypatch.setattr(bpe, "STITCH", stitch)
    tok, peer = cases[which]
    rng = random.Random(7)
    for n in [1, 2, 3, 4, 5, 64, 65, 129] + [rng.randint(1, 3000) for _ in range(20)]:
        digits = "".join(rng.choice(string.digits) for _ in range(n))
        assert list(tok._bpe_stitched(digits)) == list(tok._bpe(digits)) == peer(digits), n
    for alphabet in ["01", "0123456789ab ", "abcdefghij", "0123456789=-.,", string.printable]:
        mixed = "".join(rng.choice(alphabet) for _ in range(rng.randint(500, 2000)))
        assert tok._bpe_stitched(mixed) == tok._bpe(mixed), alphabet
    digits = "".join(rng.choice(string.digits) for _ in range(100_000))
    assert tok.encode(digits) == peer(digits)


def test_stitched_refills_its_full_cache(cases, monkeypatch):
    # a cache of 300 pairs: one 5,000-digit run asks about ~50 joins, some of them asked before, so
    # the cache fills mid-run and is emptied while the run still needs pairs it held
    monkeypatch.setattr(bpe, "CACHE_SIZE", 300)
    tok, peer = cases["gpt2"]
    tok._remerged.clear()
    rng = random.Random(11)
    for _ in range(6):
        digits = "".join(rng.choice(string.digits) for _ in range(5000))
        assert list(tok._bpe_stitched(digits)) == peer(digits)
        assert len(tok._remerged) <= 300  # bounded


@pytest.mark.parametrize("which", ["gpt2", "trained"])
def test_waves_and_heap_equal_readable_on_real_text(which, cases):
    tok, peer = cases[which]
    rng = random.Random(3)
    pieces = sorted({p for t in texts(rng) for p in bpe.pretokenize(t)})
    assert len(pieces) > 800
    readable = [tok._bpe(p) for p in pieces]
    assert tok._bpe_waves(pieces) == dict(zip(pieces, map(bpe._pack, readable)))
    assert [tok._bpe_heap(p) for p in pieces] == readable
    fresh = bpe.Tokenizer(tok.merges, tok.vocab, tok.special_tokens, learned=True)  # no cache
    for t in texts(rng):
        assert fresh.encode(t, allowed_special="all") == peer(t)


def test_waves_handle_missing_bytes_and_refuse_unordered_merges():
    from tokenizers import Tokenizer as HFTokenizer, models

    rng = random.Random(4)
    pieces = sorted({p for t in texts(rng) for p in bpe.pretokenize(t)})
    # a vocab without some bytes (as SmolLM2's): they are dropped, in both paths alike
    tok = bpe.train_bpe(SAMPLE.read_text(encoding="utf-8"), 256 + 300)
    keep = set(range(256)) - {ord("q"), 0xC3}
    merges = {}
    for (a, b), i in tok.merges.items():
        if a in keep and b in keep:
            merges[(a, b)] = i
            keep.add(i)
    dropping = bpe.Tokenizer(merges, {i: tok.vocab[i] for i in keep}, drop_missing_bytes=True)
    assert dropping._bpe_waves(pieces) == {p: bpe._pack(dropping._bpe(p)) for p in pieces}
    # merges where a pair ranks before the merge that makes one of its tokens: BPE may then merge
    # a new pair before the rest of the current one, so the waves must not be used
    hand = bpe.Tokenizer([(b"ab", b"c"), (b"a", b"b")],
                         {i: bytes([i]) for i in range(256)} | {256: b"abc", 257: b"ab"})
    assert hand._tables is None
    words = [f"abc{w}" for w in pieces if w.isascii() and w.isalpha() and w.islower()][:100]
    hf = HFTokenizer(models.BPE({**{chr(i): i for i in range(97, 123)}, "abc": 256, "ab": 257},
                                [("ab", "c"), ("a", "b")]))
    want = [i for w in words for i in hf.encode(w).ids + [ord("\n")]]
    assert len(words) > 50 and hand.encode("\n".join(words) + "\n") == want


def test_bounded_cache_keeps_ids(gpt2, monkeypatch):
    monkeypatch.setattr(bpe, "CACHE_SIZE", 64)
    tok = bpe.Tokenizer(gpt2.merges, gpt2.vocab, gpt2.special_tokens, learned=True)
    peer = tiktoken_of(gpt2)
    rng = random.Random(5)
    some = texts(rng)
    most = max(len(set(bpe.pretokenize(t))) for t in some)
    for t in some * 2:  # the second round meets words the cache has dropped
        assert tok.encode(t, allowed_special="all") == peer.encode(t, allowed_special="all")
        assert len(tok._cache) <= max(64, most) and len(tok._old_cache) <= max(64, most)
    assert tok._old_cache  # it did rotate


def test_encode_to_numpy_equals_tiktokens(gpt2):
    # the ids as one uint32 array, from the packed caches, as tiktoken's encode_to_numpy gives them
    tok = bpe.Tokenizer(gpt2.merges, gpt2.vocab, gpt2.special_tokens, learned=True)
    peer = tiktoken_of(gpt2)
    rng = random.Random(7)
    for t in [*texts(rng), "", EOT, f"{EOT}{EOT} x{EOT}"]:
        got, want = tok.encode_to_numpy(t, "all"), peer.encode_to_numpy(t, allowed_special="all")
        assert got.dtype == want.dtype == np.uint32 and np.array_equal(got, want), t[:40]
        assert tok.encode(t, allowed_special="all") == want.tolist()


@pytest.mark.parametrize("pattern", [bpe.GPT2_SPLIT_PATTERN, bpe.GPT4_SPLIT_PATTERN])
def test_encode_iterable_across_blank_lines_and_whitespace(gpt2, pattern):
    tok = bpe.Tokenizer(gpt2.merges, gpt2.vocab, gpt2.special_tokens, pattern, learned=True)
    rng = random.Random(6)
    blanks = ["\n", "\n\n\n", "   \n", "\t\n", "  ", " \n \n", "\r\n\r\n", "\u3000\n", "x\n",
              "word ", f"{EOT}\n", "end.\n", "12 ", "=" * 40 + "\n"]
    lines = [rng.choice(blanks) * rng.randint(1, 4) for _ in range(2000)]
    text = "".join(lines)
    want = tok.encode(text, allowed_special="all")
    assert want == tiktoken_of(tok).encode(text, allowed_special="all")
    for buffer_chars in (16, 100, 1000):
        assert list(tok.encode_iterable(lines, "all", buffer_chars=buffer_chars)) == want


def test_gpt2_merges_cache_is_derived_again_when_damaged(gpt2, tmp_path, monkeypatch):
    (tmp_path / "gpt2.tiktoken").write_bytes(bpe.gpt2_ranks_path().read_bytes())
    monkeypatch.setenv("SCRATCHGPT_CACHE", str(tmp_path))
    (tmp_path / "gpt2.merges.i32").write_bytes(b"\x00" * 400_000)  # the right size, wrong ids
    tok = bpe.gpt2_tokenizer.__wrapped__()
    assert tok.merges == gpt2.merges and list(tok.merges.values()) == list(range(256, 50256))
    data = (tmp_path / "gpt2.merges.i32").read_bytes()
    assert hashlib.sha256(data).hexdigest() == bpe.GPT2_MERGES_SHA256
    monkeypatch.setattr(bpe, "_gpt2_merges", lambda vocab: pytest.fail("derived again"))
    assert bpe.gpt2_tokenizer.__wrapped__().merges == gpt2.merges  # now read from the cache
