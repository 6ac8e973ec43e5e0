"""token_lengths.py: statistics, percentiles (against numpy), the recommendation rules, every input format,
every tokenizer kind (against a peer where one exists), --json/--write, and bad input."""
import bisect
import importlib.util
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import files
import token_lengths as tl

ROOT = Path(__file__).resolve().parent.parent
RATIONALES = ROOT / "tests" / "fixtures" / "token_lengths_rationales.jsonl"
QS = [0.01, 0.07, 0.1, 0.29, 0.5, 0.57, 0.9, 0.95, 0.99, 0.999, 1.0]


def write(path, text, mode="w"):
    path.write_bytes(text) if mode == "wb" else path.write_text(text, encoding="utf-8")
    return str(path)


def direct_at(lengths, q):
    """By the definition: the smallest of the lengths L such that at least a share q of them are <= L
    (q * n rounded to 9 decimals, so that 0.07 * 100 counts as 7)."""
    s = sorted(lengths)
    return next(L for L in s if bisect.bisect_right(s, L) >= round(q * len(s), 9))


# ----------------------------------------------------------------------------- statistics


def test_length_at_matches_numpy_inverted_cdf():
    rng = np.random.default_rng(0)
    compared = 0
    for n in list(range(1, 120)) + [1000, 1001, 9999]:
        x = rng.integers(0, 500, n)
        for q in QS:
            exact = Fraction(n) * Fraction(repr(q))
            if exact.denominator == 1 and float(n * q) != exact:
                continue  # numpy's float n*q lands just above an integer here: see the next test
            assert tl.length_at(x, q) == np.percentile(x, q * 100, method="inverted_cdf"), (n, q)
            compared += 1
    assert compared > 1200


def test_length_at_is_exact_where_float_percentiles_are_not():
    x = np.arange(1, 101)  # 7% of 100 examples is 7 examples: length 7 covers them
    assert tl.length_at(x, 0.07) == 7
    assert np.percentile(x, 7, method="inverted_cdf") == 8  # 100 * 0.07 = 7.000000000000001 in floats


def test_length_stats_against_direct_computation():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 100, 1001):
        x = rng.integers(1, 3000, n).tolist()
        st = tl.length_stats(x)
        assert set(st) == {"min", "mean", "max", "p50", "p90", "p95", "p99", "p99_9"}
        assert st["min"] == min(x) and st["max"] == max(x)
        assert st["mean"] == pytest.approx(sum(x) / len(x), abs=0.005)  # rounded to 2 decimals
        for key, q in [("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999)]:
            assert st[key] == direct_at(x, q), (n, key)
        assert all(isinstance(v, int) for k, v in st.items() if k != "mean")


# ----------------------------------------------------------------------------- recommendation


def test_recommend_length_rules():
    x = list(range(1, 21))  # 20 examples of lengths 1..20
    assert tl.recommend_length(x) == 24  # max 20, rounded up to a multiple of 8
    assert tl.recommend_length(x, multiple_of=1) == 20
    assert tl.recommend_length(x, coverage=0.95, multiple_of=1) == 19  # 19 of 20 examples fit
    assert tl.recommend_length(x, coverage=0.951, multiple_of=1) == 20  # 19.02 examples: 20 must fit
    assert tl.recommend_length(x, coverage=0.5, multiple_of=1) == 10
    assert tl.recommend_length(x, coverage=0.5, multiple_of=8) == 16
    assert tl.recommend_length([16, 3], multiple_of=8) == 16  # an exact multiple stays
    assert tl.recommend_length([17], multiple_of=16) == 32
    assert tl.recommend_length(np.array([5, 1, 3])) == 8  # numpy arrays too
    rng = np.random.default_rng(2)
    for _ in range(50):
        y = rng.integers(1, 1000, int(rng.integers(1, 300)))
        q, m = float(rng.choice(QS)), int(rng.choice([1, 8, 64]))
        n = tl.recommend_length(y, q, m)
        assert n % m == 0 and n - m < direct_at(y.tolist(), q) <= n
        assert (y <= n).sum() >= math.ceil(len(y) * Fraction(repr(q)))  # the coverage holds


@pytest.mark.parametrize("kwargs", [{"coverage": 0}, {"coverage": 1.5}, {"coverage": -0.1}, {"multiple_of": 0},
                                    {"multiple_of": 2.5}])
def test_recommend_length_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        tl.recommend_length([1, 2, 3], **kwargs)


def test_recommend_length_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        tl.recommend_length([])


def test_padding_share_and_candidates_against_direct_computation():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 200, 53)
    for L in (50, 120, 200):
        cut = [min(v, L) for v in x]
        assert tl.padding_share(x, L) == pytest.approx(1 - sum(cut) / (len(x) * L))
        slots = sum(max(cut[i:i + 8]) * len(cut[i:i + 8]) for i in range(0, len(cut), 8))
        assert tl.padding_share(x, L, batch_size=8) == pytest.approx(1 - sum(cut) / slots)
    rows = tl.candidates(x, 0.97, 8, 8)
    assert [r[0] for r in rows] == ["p90", "p95", "0.97", "p99", "max"]
    for name, n, truncated, pad, pad_batch in rows:
        assert truncated == sum(v > n for v in x) and pad_batch <= pad
    assert rows[-1][2] == 0 and rows[-1][1] == -(-int(x.max()) // 8) * 8


def test_padding_share_of_empty_rows_is_zero():
    # every completion empty (eot 0): gen_length is 0 and there are no positions to pad, not 0/0 = nan%
    for batch_size in (None, 2):
        assert tl.padding_share(np.array([0, 0, 0]), 0, batch_size) == 0.0
    assert tl.padding_share(np.array([0, 0, 2]), 4, 2) == 1 - 2 / (0 * 2 + 2 * 1)  # an all-empty batch is no padding


# ----------------------------------------------------------------------------- input formats (char: len)


def test_lines_format(tmp_path):
    lines = ["hello world", "", "a", "   ", "résumé 한국어 😀", "x" * 300]
    path = write(tmp_path / "a.txt", "\n".join(lines) + "\n")
    got = tl.measure([path], "char")
    want = [len(s) for s in lines if s.strip()]  # blank lines are not examples
    assert got.prompt is None and got.total.tolist() == want
    assert got.longest == (f"{path}:6", None, "x" * 300, 300)


def test_crlf_and_bom_are_not_counted(tmp_path):
    path = write(tmp_path / "a.txt", b"\xef\xbb\xbfabc\r\nde\r\n", "wb")
    assert tl.measure([path], "char").total.tolist() == [3, 2]


def test_blocks_format(tmp_path):
    blocks = ["first block\nspans two lines", "second", "third\n\nnot this"]
    path = write(tmp_path / "b.txt", "\n\n\n".join(blocks[:2]) + "\n\n" + blocks[2])
    got = tl.measure([path], "char", blocks=True)
    assert got.total.tolist() == [len(blocks[0]), len("second"), len("third"), len("not this")]
    assert got.longest[0] == f"{path}:1"


def test_jsonl_field_and_several_files(tmp_path):
    a = write(tmp_path / "a.jsonl", '{"text": "abc", "n": 1}\n\n{"text": "한국어입니다"}\n')
    b = write(tmp_path / "b.jsonl", '{"text": ""}\n{"text": "zz"}\n')
    got = tl.measure([a, b], "char", field="text")
    assert got.total.tolist() == [3, 6, 0, 2] and got.longest[0] == f"{a}:3"


def test_jsonl_prompt_completion_fixture_against_direct_computation():
    rows = [json.loads(line) for line in RATIONALES.read_text(encoding="utf-8").splitlines()]
    got = tl.measure([str(RATIONALES)], "char", prompt_field="question", completion_field="rationale",
                     prompt_template="Q: {prompt}\nA: ", eot=1)
    p = [len(f"Q: {r['question']}\nA: ") for r in rows]
    c = [len(r["rationale"]) + 1 for r in rows]
    assert got.prompt.tolist() == p and got.completion.tolist() == c
    assert got.total.tolist() == [a + b for a, b in zip(p, c)]
    s = tl.summary(got, coverage=0.9, multiple_of=8)
    totals = [a + b for a, b in zip(p, c)]
    assert s["count"] == len(rows) == 30
    assert s["total"]["max"] == max(totals) and s["completion"]["p50"] == direct_at(c, 0.5)
    assert s["recommended"] == {"max_length": -(-direct_at(totals, 0.9) // 8) * 8,
                                "gen_length": -(-direct_at(c, 0.9) // 8) * 8}
    i = int(np.argmax(totals))
    assert got.longest == (f"{RATIONALES}:{i + 1}", rows[i]["question"], rows[i]["rationale"], totals[i])


def test_qa_block_format_through_sft_reader(tmp_path):
    text = ("<|question|>\nWhat is a list?\n<|answer|>\nAn ordered, mutable sequence.\n\n"
            "<|question|>\n리스트란?\n<|answer|>\n순서가 있는\n변경 가능한 자료형.\n")
    path = write(tmp_path / "qa.txt", text)
    pairs, problems = files.read_qa_file(path)
    assert len(pairs) == 2 and not problems
    got = tl.measure([path], "char")
    assert got.prompt.tolist() == [len(q) for q, _ in pairs] == [15, 5]
    assert got.completion.tolist() == [len(a) for _, a in pairs]


def test_qa_block_without_answer_is_an_error_or_skipped(tmp_path):
    path = write(tmp_path / "qa.txt", "<|question|>\nQ1\n<|answer|>\nA1\n\n<|question|>\nQ2 has no answer\n")
    with pytest.raises(ValueError, match=r"qa.txt:6.*--skip_bad"):
        tl.measure([path], "char")
    got = tl.measure([path], "char", skip_bad=True)
    assert got.total.tolist() == [4] and len(got.skipped) == 1 and "qa.txt:6" in got.skipped[0]


def test_sft_flag_counts_rows_as_sft_builds_them(tmp_path, capsys):
    import sft
    from bpe import tokenizer_from_spec
    text = ("<|question|>\nWhat is a list?\n<|answer|>\nAn ordered, mutable sequence.\n\n"
            "<|question|>\n파이썬의 튜플은?\n<|answer|>\n변경할 수 없는 순서 있는 자료형입니다.\n")
    path = write(tmp_path / "qa.txt", text)
    pairs, _ = files.read_qa_file(path)
    rows = sft.encode_pairs(tokenizer_from_spec({"kind": "gpt2"}), pairs)  # (prompt ids, answer ids + eot)
    assert tl.main([path, "--sft", "--json", "--multiple_of", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["max"] == max(len(p) + len(c) for p, c in rows)
    assert out["prompt"]["min"] == min(len(p) for p, _ in rows)
    assert out["recommended"]["max_length"] == out["total"]["max"]  # coverage 1.0, multiple_of 1: the longest row


def test_num_proc_workers_give_the_same_lengths(tmp_path):
    rng = np.random.default_rng(4)
    rows = [{"q": "q" * int(rng.integers(1, 40)), "a": "a" * int(rng.integers(1, 400))} for _ in range(2500)]
    path = write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    one = tl.measure([path], "char", prompt_field="q", completion_field="a")
    two = tl.measure([path], "char", prompt_field="q", completion_field="a", num_proc=2, chunk_size=64)
    assert one.prompt.tolist() == two.prompt.tolist() == [len(r["q"]) for r in rows]
    assert one.completion.tolist() == two.completion.tolist() == [len(r["a"]) for r in rows]
    assert one.longest == two.longest


# ----------------------------------------------------------------------------- tokenizers (against peers)


def gpt2_peer():
    """tiktoken's GPT-2 encoding, built from the rank file `python bpe.py download-gpt2` caches."""
    import tiktoken
    import tiktoken.load

    import bpe
    rank_file = bpe.gpt2_ranks_path()
    assert rank_file.is_file(), "run `python bpe.py download-gpt2` (the README install command) first"
    return tiktoken.Encoding("gpt2", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                             mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(rank_file)),
                             special_tokens={"<|endoftext|>": 50256})


def test_gpt2_lengths_equal_tiktoken(tmp_path):
    enc = gpt2_peer()
    rows = [json.loads(line) for line in RATIONALES.read_text(encoding="utf-8").splitlines()]
    rows.append({"question": "a literal <|endoftext|> is text", "rationale": "  spaces\n\n and\ttabs  "})
    path = write(tmp_path / "r.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    got = tl.measure([path], "gpt2", prompt_field="question", completion_field="rationale")
    assert got.prompt.tolist() == [len(enc.encode_ordinary(r["question"])) for r in rows]
    assert got.completion.tolist() == [len(enc.encode_ordinary(r["rationale"])) for r in rows]


def test_bpe_model_directory(tmp_path):
    import bpe
    enc = gpt2_peer()
    tok = bpe.gpt2_tokenizer()
    tok.save(str(tmp_path / "tok"))  # a bpe.py model directory
    lines = ["Hello world, 안녕하세요!", "The tree fell unexpectedly short.", " <|endoftext|> 12345"]
    path = write(tmp_path / "a.txt", "\n".join(lines) + "\n")
    got = tl.measure([path], str(tmp_path / "tok"))
    assert got.total.tolist() == [len(enc.encode_ordinary(s)) for s in lines]


def test_wordpiece_vocab_equals_hf_bert(tmp_path):
    from tokenizers import BertWordPieceTokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "tree", "fell", "un", "##ex", "##pect",
             "##ed", "##ly", "short", ".", ",", "a", "b", "##b", "##a", "안", "##녕"]
    vocab_file = write(tmp_path / "vocab.txt", "\n".join(vocab) + "\n")
    lines = ["The tree fell unexpectedly short.", "abba, ABBA. 안녕 zzz", "[CLS] the tree [SEP]"]
    path = write(tmp_path / "a.txt", "\n".join(lines) + "\n")
    for lowercase in (True, False):
        peer = BertWordPieceTokenizer(vocab_file, lowercase=lowercase, strip_accents=lowercase)
        want = [len(peer.encode(s, add_special_tokens=False).tokens) for s in lines]
        got = tl.measure([path], vocab_file, lowercase=lowercase)
        assert got.total.tolist() == want, lowercase
        unknown = sum(peer.encode(s, add_special_tokens=False).tokens.count("[UNK]") for s in lines)
        assert got.unknown == unknown > 0, lowercase


def test_cli_reports_and_warns_about_unknown_tokens(tmp_path, capsys):
    """A WordPiece vocab that does not cover the text: the [UNK] share is reported and warned about (it
    was silent at 37%); a byte-level tokenizer has none."""
    vocab_file = write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "the", "tree", "fell"]) + "\n")
    path = write(tmp_path / "a.txt", "the tree fell\n나무가 쓰러졌다 the tree\n")  # 3 + (2 [UNK] + 2)
    assert tl.main([path, "--tokenizer", vocab_file, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["unknown_share"] == 2 / 7
    assert "warning: 28.6% of the tokens are [UNK]" in err
    assert tl.main([path, "--tokenizer", vocab_file]) == 0
    assert "unknown tokens ([UNK]): 2, 28.6% of all" in capsys.readouterr().out
    assert tl.main([path, "--tokenizer", "gpt2", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["unknown_share"] == 0 and "warning" not in err


# ----------------------------------------------------------------------------- CLI: --json, --write, report


def test_cli_json(tmp_path, capsys):
    assert tl.main([str(RATIONALES), "--tokenizer", "char", "--prompt_field", "question",
                    "--completion_field", "answer", "--json", "--coverage", "0.95"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["count", "prompt", "completion", "total", "unknown_share", "recommended"]
    answers = [len(json.loads(r)["answer"]) for r in RATIONALES.read_text(encoding="utf-8").splitlines()]
    assert out["completion"]["max"] == max(answers)
    assert out["recommended"]["gen_length"] == -(-direct_at(answers, 0.95) // 8) * 8


def test_cli_write_preserves_other_keys(tmp_path, capsys):
    config = tmp_path / "config.json"
    original = {"model": "gpt2", "lr": 3e-05, "gen_length": 1024, "nested": {"a": [1, 2]}, "max_length": 2084,
                "name": "한국어", "flag": None}
    config.write_text(json.dumps(original, indent=4, ensure_ascii=False), encoding="utf-8")
    os.chmod(config, 0o644)
    assert tl.main([str(RATIONALES), "--tokenizer", "char", "--prompt_field", "question",
                    "--completion_field", "rationale", "--write", str(config)]) == 0
    rows = [json.loads(line) for line in RATIONALES.read_text(encoding="utf-8").splitlines()]
    max_length = -(-max(len(r["question"]) + len(r["rationale"]) for r in rows) // 8) * 8  # char: one token each
    gen_length = -(-max(len(r["rationale"]) for r in rows) // 8) * 8
    new = json.loads(config.read_text(encoding="utf-8"))
    assert list(new) == list(original)  # same keys in the same order
    assert new == original | {"gen_length": gen_length, "max_length": max_length}
    assert config.read_text(encoding="utf-8").startswith('{\n    "model"')  # the file's indentation kept
    assert oct(config.stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["config.json"]  # no temp file left behind
    assert "max_length 2084 ->" in capsys.readouterr().err


def test_cli_write_custom_keys_and_plain_text(tmp_path, capsys):
    config = write(tmp_path / "c.json", '{"block_size": 1, "other": true}')
    data = write(tmp_path / "a.txt", "abcdefghij\nxy\n")
    assert tl.main([data, "--tokenizer", "char", "--write", config, "--max_length_key", "block_size"]) == 0
    assert json.loads(Path(config).read_text()) == {"block_size": 16, "other": True}  # no gen_length for plain text
    assert "gen_length not written" in capsys.readouterr().err


@pytest.mark.parametrize("content,match", [("[1, 2]", "JSON list, not an object"), ('{"a": 1,}', r"c.json:1: not valid JSON"),
                                           ('"text"', "JSON str, not an object"), ("\xff{}", "not valid UTF-8")])
def test_cli_write_rejects_non_object_config(tmp_path, capsys, content, match):
    raw = content.encode("latin-1")  # \xff: one byte that is not UTF-8
    config = write(tmp_path / "c.json", raw, "wb")
    data = write(tmp_path / "a.txt", "abc\n")
    assert tl.main([data, "--tokenizer", "char", "--write", config]) == 1
    assert match in capsys.readouterr().err
    assert Path(config).read_bytes() == raw  # untouched


def test_cli_write_missing_config_creates_it(tmp_path, capsys):
    data = write(tmp_path / "a.txt", "abc\nabcdefghij\n")
    assert tl.main([data, "--tokenizer", "char", "--write", str(tmp_path / "new.json")]) == 0
    assert "wrote " in capsys.readouterr().err  # was an error: the README's --write had no file to update
    assert json.loads((tmp_path / "new.json").read_text()) == {"max_length": 16}


def test_report_histogram_and_longest(tmp_path, capsys):
    lines = [("word " * n).strip() for n in (1, 2, 2, 3, 50)] + ["L" * 5000]
    data = write(tmp_path / "a.txt", "\n".join(lines) + "\n")
    assert tl.main([data, "--tokenizer", "char", "--coverage", "0.8"]) == 0
    out = capsys.readouterr().out
    hist = [line for line in out.splitlines() if "|" in line]
    assert sum(int(line.split()[-1]) for line in hist) == 6  # every example in one bin
    assert f"longest example: {data}:6, 5000 tokens" in out
    assert "more characters]" in out and "L" * 1000 not in out  # cut to a screen
    assert "recommended (coverage 0.8, multiple of 8): max_length=" in out
    for name in ("p90", "p95", "0.8", "p99", "max"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name


def test_plot_or_says_matplotlib_is_missing(tmp_path, capsys):
    data = write(tmp_path / "a.txt", "abc\nde\n")
    png = tmp_path / "h.png"
    assert tl.main([data, "--tokenizer", "char", "--plot", str(png)]) == 0
    err = capsys.readouterr().err
    if importlib.util.find_spec("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert err.count("matplotlib is not installed") == 1 and not png.exists()


# ----------------------------------------------------------------------------- bad input


def test_jsonl_row_without_field(tmp_path):
    path = write(tmp_path / "r.jsonl", '{"q": "a", "a": "b"}\n{"q": "c"}\n{"q": "d", "a": 5}\nnot json\n{"q": "e", "a": "f"}\n')
    with pytest.raises(ValueError, match=r"r.jsonl:2: no string field 'a' \(this row has: q\).*--skip_bad"):
        tl.measure([path], "char", prompt_field="q", completion_field="a")
    got = tl.measure([path], "char", prompt_field="q", completion_field="a", skip_bad=True)
    assert got.total.tolist() == [2, 2]
    assert [s.split(": ")[0] for s in got.skipped] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "not valid JSON" in got.skipped[2]


def test_non_utf8_file_names_file_and_line(tmp_path):
    path = write(tmp_path / "a.txt", b"fine\nalso fine\nbad \xff byte\n", "wb")
    with pytest.raises(ValueError, match=r"a.txt:3: not valid UTF-8 \(byte 0xff at column 5\)"):
        tl.measure([path], "char")


def test_empty_dataset(tmp_path):
    empty = write(tmp_path / "e.txt", "\n  \n")
    with pytest.raises(ValueError, match="empty"):
        tl.measure([empty], "char")
    allbad = write(tmp_path / "r.jsonl", '{"x": 1}\n')
    with pytest.raises(ValueError, match=r"1 rows skipped as bad\): the dataset is empty"):
        tl.measure([allbad], "char", field="text", skip_bad=True)


def test_bad_arguments(tmp_path):
    data = write(tmp_path / "r.jsonl", '{"text": "abc"}\n')
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        tl.measure([str(tmp_path / "nope.txt")], "char")
    with pytest.raises(FileNotFoundError, match="--tokenizer"):
        tl.measure([data], str(tmp_path / "no_such_vocab"))
    with pytest.raises(ValueError, match="--field NAME.*first row's keys: text"):
        tl.measure([data], "char")
    with pytest.raises(ValueError, match="both --prompt_field and --completion_field"):
        tl.measure([data], "char", prompt_field="text")
    with pytest.raises(ValueError, match="--blocks is for text files"):
        tl.measure([data], "char", field="text", blocks=True)
    qa = write(tmp_path / "qa.txt", "<|question|>\nq\n<|answer|>\na\n")
    plain = write(tmp_path / "p.txt", "plain\n")
    with pytest.raises(ValueError, match="mixes"):
        tl.measure([qa, plain], "char")


def test_unreadable_file_is_a_clean_error(tmp_path, capsys, monkeypatch):
    data = write(tmp_path / "a.txt", "abc\n")
    real_open = open

    def no_permission(path, *args, **kwargs):  # what open() raises on a mode-000 file (tests may run as root)
        if str(path) == data:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", no_permission)
    assert tl.main([data, "--tokenizer", "char"]) == 1
    assert capsys.readouterr().err == f"error: [Errno 13] Permission denied: '{data}'\n"


def test_script_prints_clean_errors(tmp_path):
    data = write(tmp_path / "a.txt", b"\xfe\n", "wb")
    r = subprocess.run([sys.executable, str(ROOT / "token_lengths.py"), data, "--tokenizer", "char"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {data}:1: not valid UTF-8 (byte 0xfe at column 1); re-encode the file as UTF-8, e.g. with iconv"
    r = subprocess.run([sys.executable, str(ROOT / "token_lengths.py"), data, "--coverage", "2"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "coverage=2.0: must be in (0, 1]" in r.stderr
