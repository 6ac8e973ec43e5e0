"""wordpiece.py against its peers: transformers' BertTokenizer (Rust) and BertTokenizerLegacy (pure
Python) on the same vocab.txt, Hugging Face's WordPieceTrainer, and a naive from-scratch trainer
written here.

Fixtures (ours): wordpiece_multilingual.txt is hand-written text in many scripts;
wordpiece_vocab.txt is a 700-token cased+uncased vocab made once from that text without its
Thai/Vietnamese and Hindi/Arabic/Hebrew lines, so those scripts exercise [UNK].
"""
import os
import random
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import wordpiece
from tests.adapters import get_wordpiece_tokenizer, run_train_wordpiece

FIXTURES = Path(__file__).parent / "fixtures"
VOCAB = FIXTURES / "wordpiece_vocab.txt"
MULTILINGUAL = (FIXTURES / "wordpiece_multilingual.txt").read_text(encoding="utf-8")
ROOT = Path(__file__).parent.parent

# Text the basic step has to get right: control and format characters, every kind of whitespace,
# accents composed and decomposed, CJK, emoji with skin tone modifiers, flags, astral letters,
# special tokens inside and next to words, words at and over the 100-character limit.
EXTRA = [
    "", "   ", "tab\there\x00nul\ufffdrepl\x7fdel \x1b[0m",
    "\u0085x\u2028y\u2029z\x0bw\x1cv\u3000ideo\u00a0nbsp\u200bzero\u200dwidth",
    "ＡＢＣ ﬁne İstanbul Straße ǅ ǈ \uf900 𠀀𪜀 Café",
    "emoji👍🏽 😀ok \U0001F1FA\U0001F1F8 \U000e0001tag \ue000pua \U0001D173x 𝐀𝐁 𝄞𐌰𐌱",
    "[CLS] Hello [SEP] [cls] hello x[MASK]y [MASK][MASK] [UNK] [PAD]",
    "a" * 100, "a" * 101, "don't stop-believing!!! $5.00 #1 @me ~~",
]
# Where transformers' two BERT tokenizers disagree with each other; we follow the Python one:
# Python's str.lower() turns a final capital sigma into 'ς', Rust lowercases letter by letter;
# Python composes to NFC in cased mode, Rust does not; Rust keeps unassigned code points.
RUST_DIFFERS = ["Ελληνικά: ΟΔΟΣ, Σοφία.", "ΣΑΣ. ΣΑΣ", "Cafe\u0301 cre\u0300me", "x\u0378y"]


def _peers(lowercase: bool):
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # vocab=, not vocab_file= (ignored in 5.x)
        rust = BertTokenizer(vocab=str(VOCAB), do_lower_case=lowercase)
        legacy = BertTokenizerLegacy(vocab_file=str(VOCAB), do_lower_case=lowercase)
    assert len(rust.get_vocab()) == len(legacy.vocab) == 700  # both really loaded our file
    return rust, legacy


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_tokens_and_ids_match_both_bert_tokenizers(lowercase):
    rust, legacy = _peers(lowercase)
    ours = wordpiece.WordPieceTokenizer.from_vocab_file(VOCAB, lowercase=lowercase)
    texts = MULTILINGUAL.splitlines() + EXTRA + [MULTILINGUAL]
    unk = 0
    for text in texts:
        tokens = ours.tokenize(text)
        assert tokens == legacy.tokenize(text), text
        ids = ours.encode(text)
        assert ids == legacy.convert_tokens_to_ids(tokens)
        # Rust lowercases its final Σ to σ, not ς: see RUST_DIFFERS
        if not (lowercase and "ΟΔΟΣ" in text):
            assert tokens == rust.tokenize(text), text
            assert ids == rust.encode(text, add_special_tokens=False), text
        unk += tokens.count("[UNK]")
    assert unk > 10  # the lines left out of the vocab, and the emoji, really exercised [UNK]


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_where_the_two_bert_tokenizers_disagree_we_follow_the_python_one(lowercase):
    rust, legacy = _peers(lowercase)
    ours = wordpiece.WordPieceTokenizer.from_vocab_file(VOCAB, lowercase=lowercase)
    for text in RUST_DIFFERS:
        assert ours.tokenize(text) == legacy.tokenize(text), text
    rust_agrees = [ours.tokenize(t) == rust.tokenize(t) for t in RUST_DIFFERS]
    # the cases really are ones where transformers' two tokenizers differ
    assert not all(rust_agrees)


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_random_unicode_matches_python_bert(lowercase):
    # random strings over every plane: vocab characters, whitespace and control characters,
    # combining marks, any BMP or astral code point (assigned or not); Python's BERT is the
    # reference for all of them
    _, legacy = _peers(lowercase)
    ours = wordpiece.WordPieceTokenizer.from_vocab_file(VOCAB, lowercase=lowercase)
    rng = random.Random(0)
    vocab_chars = [t for t in VOCAB.read_text(encoding="utf-8").splitlines() if len(t) == 1]
    spaces = " \t\n\r\x00\x0b\u00a0\u2028\u3000\ufffd\u200d"
    pools = [lambda: rng.choice(vocab_chars), lambda: rng.choice(spaces),
             lambda: chr(rng.randint(0x300, 0x36F)), lambda: chr(rng.randint(0, 0xFFFF)),
             lambda: chr(rng.randint(0x10000, 0x10FFFF))]
    for _ in range(400):
        text = "".join(rng.choice(pools)() for _ in range(rng.randint(1, 25)))
        # lone surrogates are not text
        text = "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)
        assert ours.tokenize(text) == legacy.tokenize(text), repr(text)


def test_greedy_longest_match_first():
    # BERT's own docstring example: "unaffable" -> un ##aff ##able, although "u" and "##n" exist too
    vocab = ["[UNK]", "u", "un", "##n", "##a", "##f", "##aff", "##able", "##b", "##l", "##e", "is"]
    tok = get_wordpiece_tokenizer(vocab)
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.encode("Unaffable IS") == [2, 6, 7, 11]
    assert tok.decode([2, 6, 7, 11]) == "unaffable is"


def test_unk_rules():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##a", "b", "##b", "!"]
    tok = wordpiece.WordPieceTokenizer(vocab)
    assert tok.tokenize("a" * 100) == ["a"] + ["##a"] * 99  # exactly 100 characters: still split
    assert tok.tokenize("a" * 101) == ["[UNK]"]  # over 100: one [UNK] for the whole word
    # one bad character: the whole word is [UNK]
    assert tok.tokenize("abba abxa! x") == ["a", "##b", "##b", "##a", "[UNK]", "!", "[UNK]"]
    assert tok.tokenize("[CLS] ab [SEP]") == ["[CLS]", "a", "##b", "[SEP]"]  # special tokens: whole
    # lowercase [cls] is not special: "[" "cls" "]"
    assert tok.tokenize("[cls]") == ["[UNK]", "[UNK]", "[UNK]"]
    custom = wordpiece.WordPieceTokenizer(vocab + ["<eot>"], special_tokens=["[UNK]", "<eot>"])
    assert custom.tokenize("ab<eot>ba") == ["a", "##b", "<eot>", "b", "##a"]


def test_decode_matches_bert_and_rejects_unknown_ids():
    _, legacy = _peers(True)
    tok = wordpiece.WordPieceTokenizer.from_vocab_file(VOCAB)
    for line in MULTILINGUAL.splitlines():
        ids = tok.encode(line)
        assert tok.decode(ids) == legacy.convert_tokens_to_string(legacy.convert_ids_to_tokens(ids))
    # case and spacing are not kept; numpy ints are ids too
    assert tok.decode(tok.encode("The tree fell.")) == "the tree fell ."
    assert tok.decode(np.array(tok.encode("The tree fell."))) == "the tree fell ."
    for bad in ([700], [-1], [1.0], ["1"]):
        with pytest.raises(ValueError, match="unknown token id"):
            tok.decode(bad)


def test_vocab_file_round_trip(tmp_path):
    _, legacy = _peers(False)
    tok = wordpiece.WordPieceTokenizer.from_vocab_file(VOCAB, lowercase=False)
    assert tok.vocab == VOCAB.read_text(encoding="utf-8").splitlines()
    tok.save(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_bytes() == VOCAB.read_bytes()
    (tmp_path / "hf").mkdir()
    (hf_file,) = legacy.save_vocabulary(str(tmp_path / "hf"))
    assert Path(hf_file).read_bytes() == VOCAB.read_bytes()  # the same file transformers writes
    again = wordpiece.WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt", lowercase=False)
    assert again.encode(MULTILINGUAL) == tok.encode(MULTILINGUAL)


def test_bad_vocab_and_input(tmp_path):
    with pytest.raises(ValueError, match=r"no \[UNK\]"):
        wordpiece.WordPieceTokenizer(["[PAD]", "a", "##b"])
    with pytest.raises(ValueError, match="appears twice"):
        wordpiece.WordPieceTokenizer(["[UNK]", "a", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        wordpiece.WordPieceTokenizer(["[UNK]", "", "a"])
    with pytest.raises(ValueError, match="special token"):
        wordpiece.WordPieceTokenizer(["[UNK]", "a"], special_tokens=["[UNK]", "<eot>"])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        wordpiece.WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="not a file"):
        wordpiece.WordPieceTokenizer.from_vocab_file(tmp_path)
    (tmp_path / "binary.txt").write_bytes(b"[UNK]\n\xff\xfe\x00garbage\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        wordpiece.WordPieceTokenizer.from_vocab_file(tmp_path / "binary.txt")
    with pytest.raises(ValueError, match="takes a str"):
        wordpiece.WordPieceTokenizer.from_vocab_file(VOCAB).encode(b"bytes")


# ----------------------------------------------------------------------------- training
def _synthetic_corpus(seed=0, n_words=300) -> str:
    """Made-up words with Zipf-like counts: realistic pair statistics, made in the test."""
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "me", "su", "na", "lo", "pe", "qu", "ex", "ing", "ed", "er",
                 "th", "an", "é"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
             for _ in range(n_words)]
    words = [w.capitalize() if rng.random() < 0.2 else w for w in words]
    return " ".join(w for i, w in enumerate(words)
                    for _ in range(max(1, 2000 // (i + 1) + rng.randint(0, 3))))


def _naive_train(text, vocab_size, scoring, specials=wordpiece.BERT_SPECIAL_TOKENS,
                 min_frequency=2):
    """The obvious slow trainer: recount every pair and piece from scratch before each merge."""
    counts = Counter(wordpiece.pre_tokenize(text))
    vocab = list(specials) + sorted({ch for w in counts for ch in w})
    vocab += sorted({"##" + ch for w in counts for ch in w[1:]})
    words = {w: [w[0]] + ["##" + ch for ch in w[1:]] for w in counts}
    while len(vocab) < vocab_size:
        pairs, freq = Counter(), Counter()
        for w, pieces in words.items():
            for p in pieces:
                freq[p] += counts[w]
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] += counts[w]
        pairs = {p: c for p, c in pairs.items() if c >= min_frequency}
        if not pairs:
            break
        ids = {t: i for i, t in enumerate(vocab)}
        if scoring == "frequency":
            best = min(pairs, key=lambda p: (-pairs[p], ids[p[0]], ids[p[1]]))
        else:
            best = min(pairs, key=lambda p: (-pairs[p] / (freq[p[0]] * freq[p[1]]), -pairs[p],
                                             ids[p[0]], ids[p[1]]))
        merged = best[0] + best[1][2:]
        if merged not in ids:
            vocab.append(merged)
        for w, pieces in words.items():
            out, i = [], 0
            while i < len(pieces):
                if tuple(pieces[i:i + 2]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            words[w] = out
    return vocab


@pytest.mark.parametrize("scoring", ["frequency", "likelihood"])
def test_fast_trainer_equals_naive_trainer(scoring):
    text = _synthetic_corpus(n_words=120) + "\n" + MULTILINGUAL
    vocab = wordpiece.train_wordpiece(text, 640, scoring=scoring)
    # 397 alphabet pieces, 238 merges
    assert len(vocab) == 640 and vocab == _naive_train(text, 640, scoring)


def test_frequency_scoring_learns_what_huggingface_wordpiece_trainer_learns():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    text = _synthetic_corpus()
    for size in (150, 400):
        hf = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        hf.normalizer = normalizers.BertNormalizer(lowercase=True)
        hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=size,
                                            special_tokens=wordpiece.BERT_SPECIAL_TOKENS,
                                            min_frequency=2, show_progress=False)
        hf.train_from_iterator([text], trainer)
        ours = wordpiece.train_wordpiece(text, size, scoring="frequency")
        # the same pieces; HF numbers its `##` alphabet in hash order, so compare as sets
        assert len(ours) == size and set(ours) == set(hf.get_vocab())


def test_likelihood_and_frequency_pick_different_first_merges():
    # by hand: pairs a+##b and c+##b occur 10 times each, q+##z 3 times; freq(a)=freq(c)=10,
    # freq(##b)=20, freq(q)=freq(##z)=3. Frequency merges "ab" (count 10, ties go to the smaller
    # ids: a < c); likelihood merges "qz": 3 / (3 * 3) = 0.33 beats 10 / (10 * 20) = 0.05.
    text = "ab " * 10 + "cb " * 10 + "qz " * 3
    alphabet = ["a", "b", "c", "q", "z", "##b", "##z"]
    start = wordpiece.BERT_SPECIAL_TOKENS + alphabet
    assert wordpiece.train_wordpiece(text, 13, scoring="frequency") == start + ["ab"]
    assert wordpiece.train_wordpiece(text, 13, scoring="likelihood") == start + ["qz"]


def test_training_is_deterministic_across_processes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_synthetic_corpus(seed=1) + "\n" + MULTILINGUAL, encoding="utf-8")
    outputs = []
    # different string hashing, so set and dict orders differ between the runs
    for seed in ("1", "2"):
        out = tmp_path / f"vocab{seed}.txt"
        subprocess.run([sys.executable, "wordpiece.py", "train", "--input", str(corpus),
                        "--vocab_size", "900", "--output", str(out), "--cased"],
                       cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    expected = wordpiece.train_wordpiece(corpus.read_text(encoding="utf-8"), 900, lowercase=False)
    assert outputs[0].decode("utf-8").splitlines() == expected


def test_adapter_trains_a_vocab_bert_can_load(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_synthetic_corpus(seed=2) + "\n" + MULTILINGUAL, encoding="utf-8")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]
    vocab = run_train_wordpiece(corpus, 600, specials)
    assert len(vocab) == 600 and len(set(vocab)) == 600 and vocab[:6] == specials
    tok = get_wordpiece_tokenizer(vocab)
    wordpiece.write_vocab(vocab, tmp_path / "vocab.txt")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    # the Python one: Greek final sigma
    bert = BertTokenizerLegacy(vocab_file=str(tmp_path / "vocab.txt"))
    text = corpus.read_text(encoding="utf-8")
    assert tok.encode(text) == bert.encode(text, add_special_tokens=False)
    assert tok.encode(text).count(tok.unk_id) == 0  # every training character is in the alphabet


def test_training_bad_input(tmp_path):
    (tmp_path / "corpus.txt").write_text("ab cb qz", encoding="utf-8")
    with pytest.raises(ValueError, match="name of a file"):  # a path where the text belongs
        wordpiece.train_wordpiece(str(tmp_path / "corpus.txt"), 100)
    with pytest.raises(ValueError, match="as a str"):
        wordpiece.train_wordpiece(tmp_path / "corpus.txt", 100)
    with pytest.raises(ValueError, match=r"use vocab_size >= 12"):  # 5 specials + a b c q z ##b ##z
        wordpiece.train_wordpiece("ab cb qz", 11)
    assert len(wordpiece.train_wordpiece("ab cb qz", 12)) == 12  # the minimum itself works
    with pytest.raises(ValueError, match="scoring"):
        wordpiece.train_wordpiece("ab", 100, scoring="bpe")
    for empty in ("", " \n ", "[CLS] [SEP]"):
        with pytest.raises(ValueError, match="no words"):
            wordpiece.train_wordpiece(empty, 100)
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        wordpiece.train_wordpiece("ab", 100, special_tokens=["[PAD]"])


# ----------------------------------------------------------------------------- the CLI
def test_cli_compare_prints_both_tokenizations(capsys):
    import bpe

    text = "The tree fell unexpectedly short."
    wordpiece.main(["compare", "--vocab", str(VOCAB), "--text", text])
    out = capsys.readouterr().out
    _, legacy = _peers(True)
    assert str(legacy.tokenize(text)) in out
    assert str(bpe.gpt2_tokenizer().encode_ordinary(text)) in out
    assert "round trip: BPE True, WordPiece False" in out
    wordpiece.main(["compare", "--vocab", str(VOCAB),
                    "--file", str(FIXTURES / "wordpiece_multilingual.txt")])
    out = capsys.readouterr().out
    n_bpe = len(bpe.gpt2_tokenizer().encode_ordinary(MULTILINGUAL))
    n_wp = len(legacy.tokenize(MULTILINGUAL))
    assert f"GPT-2 BPE  {n_bpe:>10,} tokens  {n_bpe / len(MULTILINGUAL):.3f} tokens/char" in out
    assert f"WordPiece  {n_wp:>10,} tokens  {n_wp / len(MULTILINGUAL):.3f} tokens/char" in out


def test_cli_errors_are_clean(tmp_path):
    result = subprocess.run([sys.executable, "wordpiece.py", "compare",
                             "--vocab", str(tmp_path / "nope.txt"), "--text", "x"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert "error:" in result.stderr and "nope.txt" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1  # one line
