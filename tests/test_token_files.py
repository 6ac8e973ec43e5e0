"""Token files: bpe.encode_file (a file encoded in chunks, in processes) against tok.encode on the whole
text and against the peers (tiktoken for GPT-2, Hugging Face tokenizers for Llama 3 / Qwen2 shapes); uint16
and uint32 ids; shards that get_batch samples exactly as one joined file."""
import importlib
import json
import multiprocessing
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import bpe
import files
import train

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "fixtures" / "bpe_sample.txt"
EOT = "<|endoftext|>"


def corpus(seed=0, n_docs=60) -> str:
    """Documents of real text (the sample's paragraphs), mixed with runs of spaces, tabs and blank
    lines, non-ASCII text and digits, joined by <|endoftext|> (with and without newlines around it)."""
    rng = random.Random(seed)
    paragraphs = SAMPLE.read_text(encoding="utf-8").replace(EOT, "").split("\n\n")
    extras = ["   \t  ", "\n\n\n", "안녕하세요, 세계!", "e\u0301 \u212b \ufb01", " 12345 678", "x  \n  y",
              "“quoted”—dash", "\u00a0\u00a0nbsp"]
    docs = ["".join(rng.choice(paragraphs + extras) + rng.choice([" ", "\n", "  ", "\n\n", "\t"])
                    for _ in range(rng.randint(1, 6))) for _ in range(n_docs)]
    return "".join(d + rng.choice([EOT, "\n" + EOT + "\n", EOT + "\n\n", "  " + EOT])
                   for d in docs)


def joined(chunks) -> list[int]:
    return [i for ids in chunks for i in ids.tolist()]


@pytest.fixture(scope="module")
def gpt2():
    return bpe.gpt2_tokenizer()


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    import tiktoken
    import tiktoken.load
    return tiktoken.Encoding("gpt2-local", pat_str=bpe.GPT2_SPLIT_PATTERN, special_tokens={EOT: 50256},
                             mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(bpe.gpt2_ranks_path())))


# --------------------------------------------------------------------------------------- encode_file
@pytest.mark.parametrize("num_proc", [1, 2])
def test_encode_file_equals_encode_and_tiktoken(gpt2, tiktoken_gpt2, tmp_path, num_proc):
    text = corpus()
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    # chunks of ~100 bytes: most cut targets land in the middle of a word or a whitespace run
    chunks = list(bpe.encode_file(gpt2, path, "all", num_proc=num_proc, chunk_bytes=100))
    assert len(chunks) > 50
    want = tiktoken_gpt2.encode(text, allowed_special="all")
    assert joined(chunks) == want == gpt2.encode(text, allowed_special="all")
    # {EOT} as a set, and "none": the special token is plain text, so only line starts are cut
    assert joined(bpe.encode_file(gpt2, path, {EOT}, num_proc=num_proc, chunk_bytes=100)) == want
    plain = joined(bpe.encode_file(gpt2, path, "none", num_proc=num_proc, chunk_bytes=100))
    assert plain == tiktoken_gpt2.encode_ordinary(text) and plain != want
    with pytest.raises(ValueError, match="contains the special token '<\\|endoftext\\|>'"):
        joined(bpe.encode_file(gpt2, path, num_proc=num_proc, chunk_bytes=100))  # "none_raise"


def test_encode_file_default_chunks_and_errors(gpt2, tiktoken_gpt2, tmp_path):
    path = tmp_path / "corpus.txt"
    text = corpus(1, 20)
    path.write_text(text, encoding="utf-8")
    assert len(list(bpe.encode_file(gpt2, path, "all"))) == 1  # a small file is one chunk
    assert joined(bpe.encode_file(gpt2, path, "all", num_proc=2)) == tiktoken_gpt2.encode(text, allowed_special="all")
    with pytest.raises(FileNotFoundError, match="missing.txt not found"):
        next(bpe.encode_file(gpt2, tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="num_proc=0: give at least 1"):
        next(bpe.encode_file(gpt2, path, num_proc=0))
    path.write_bytes(b"ok\n" * 100 + b"\xff bad")
    for num_proc in (1, 2):
        with pytest.raises(ValueError, match="not UTF-8 text: invalid byte b'\\\\xff' at byte offset 300"):
            joined(bpe.encode_file(gpt2, path, chunk_bytes=64, num_proc=num_proc))


def test_encode_file_workers_end_with_it(gpt2, tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus(1, 20), encoding="utf-8")
    chunks = bpe.encode_file(gpt2, path, "all", num_proc=2, chunk_bytes=100)
    next(chunks)
    chunks.close()  # a caller that stops early: no worker left behind
    assert multiprocessing.active_children() == []
    monkeypatch.setattr(bpe, "_encode_file_chunk", lambda tok, job: os._exit(9))  # as if killed
    with pytest.raises(RuntimeError, match=r"a worker process died \(exit code 9"):
        joined(bpe.encode_file(gpt2, path, "all", num_proc=2, chunk_bytes=100))
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("pattern", ["LLAMA3_SPLIT_PATTERN", "QWEN2_SPLIT_PATTERN"])
def test_encode_file_equals_tokenizers_for_llama3_and_qwen2_splits(tmp_path, pattern):
    from tokenizers import Tokenizer as HFTokenizer
    text = corpus(2)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    tok = bpe.train_bpe(text, 600, [EOT], pattern=getattr(bpe, pattern))
    hf = HFTokenizer.from_str(json.dumps(tok.to_hf_json()))
    got = joined(bpe.encode_file(tok, path, "all", num_proc=2, chunk_bytes=100))
    assert got == hf.encode(text, add_special_tokens=False).ids == tok.encode(text, allowed_special="all")


# ------------------------------------------------------------------------------------------- dtypes
def test_token_dtype_fits_llama3_and_qwen2():
    assert [files.token_dtype(v) for v in (65, 50257, 65536, 65537, 128256, 151646)] == \
        ["uint16"] * 3 + ["uint32"] * 3


@pytest.mark.parametrize("vocab_size", [50257, 151646])
def test_ids_round_trip_through_token_files_and_get_batch(tmp_path, vocab_size):
    fetch = importlib.import_module("data.fetch")
    rng = np.random.default_rng(0)
    ids = {s: rng.integers(0, vocab_size, n).tolist() for s, n in (("train", 40), ("val", 20))}
    ids["train"][:3] = [vocab_size - 1, 0, min(65535, vocab_size - 1)]  # the extremes
    meta = fetch.write_splits(str(tmp_path), vocab_size, {"kind": "gpt2"}, {s: [v] for s, v in ids.items()})
    assert meta["dtype"] == ("uint16" if vocab_size <= 65536 else "uint32")
    data_dir, loaded = train.load_meta(str(tmp_path))
    assert loaded == meta == json.loads((tmp_path / "meta.json").read_text())
    splits = train.load_splits(data_dir, loaded, 8)
    assert np.concatenate(splits["train"]).tolist() == ids["train"]
    x, y = train.get_batch(splits["train"], 400, 8, "cpu", torch.Generator().manual_seed(0))
    starts = torch.randint(40 - 8, (400,), generator=torch.Generator().manual_seed(0)).tolist()
    assert set(starts) == set(range(32))  # every window, the extremes at the start included
    assert all(x[b].tolist() == ids["train"][s:s + 8] for b, s in enumerate(starts))
    assert max(x.max().item(), y.max().item()) < vocab_size and (x >= 65536).any() == (vocab_size > 65536)


def test_meta_dtype_must_hold_the_vocab(tmp_path):
    fetch = importlib.import_module("data.fetch")
    meta = fetch.write_splits(str(tmp_path), 128256, {"kind": "gpt2"}, {"train": [[1, 2, 3]], "val": [[4, 5]]})
    assert meta["dtype"] == "uint32"
    for bad in ({"dtype": "uint16"}, {"dtype": "int64"}, {"token_files": {"train": [["../x.bin", 3]]}},
                {"token_files": {"train": [["train.bin", -1]], "val": [["val.bin", 2]]}}):
        (tmp_path / "meta.json").write_text(json.dumps(dict(meta, **bad)))
        with pytest.raises(ValueError, match="meta.json (is not a usable meta file|lists no usable token_files)"):
            train.load_meta(str(tmp_path))
    # an older meta.json, without dtype and token_files: uint16 ids in train.bin and val.bin
    (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": 50257, "tokenizer": {"kind": "gpt2"}}))
    np.arange(40, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(20, dtype=np.uint16).tofile(tmp_path / "val.bin")
    data_dir, old = train.load_meta(str(tmp_path))
    assert old["dtype"] == "uint16" and old["token_files"] == train.OLD_TOKEN_FILES
    assert np.concatenate(train.load_splits(data_dir, old, 8)["train"]).tolist() == list(range(40))


# ------------------------------------------------------------------------------------------- shards
def test_shards_are_written_streamed_and_checked(tmp_path):
    chunks = [list(range(i * 7, i * 7 + 7)) for i in range(10)]  # 70 ids in chunks of 7
    listed = files.write_token_split(tmp_path, "train", chunks, "uint16", shard_tokens=16)
    assert listed == [[f"train/{k:06d}.bin", 16] for k in range(4)] + [["train/000004.bin", 6]]
    shards = files.open_token_split(tmp_path, listed, "uint16")
    assert [len(s) for s in shards] == [16, 16, 16, 16, 6] and np.concatenate(shards).tolist() == list(range(70))
    # a rerun that fits one file: train.bin, and the old shards are gone
    assert files.write_token_split(tmp_path, "train", chunks[:2], "uint16", 16) == [["train.bin", 14]]
    assert sorted(os.listdir(tmp_path)) == ["train.bin"]
    # and back to shards: the stale train.bin is gone
    listed = files.write_token_split(tmp_path, "train", chunks, "uint16", 32)
    assert sorted(os.listdir(tmp_path)) == ["train"] and len(listed) == 3
    # a shard cut short is an error, not garbage to train on
    with open(tmp_path / "train" / "000001.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match="000001.bin holds 10 bytes, not the 32 uint16 ids its meta lists"):
        files.open_token_split(tmp_path, listed, "uint16")


def test_an_id_too_big_for_the_dtype_is_an_error_not_wrapped(tmp_path):
    # encode_file gives uint32 arrays; a cast to uint16 would wrap 70,000 to 4,464 without a word
    for chunk in ([1, 70_000], np.array([1, 70_000], np.uint32), [-1]):
        with pytest.raises(OverflowError, match="do not all fit in uint16"):
            files.write_token_split(tmp_path, "train", [chunk], "uint16")
    assert files.write_token_split(tmp_path, "train", [np.array([65_535], np.uint32)], "uint16")
    assert np.fromfile(tmp_path / "train.bin", np.uint16).tolist() == [65_535]


def test_get_batch_on_shards_equals_the_joined_file():
    data = np.arange(1000, dtype=np.uint16) * 7 % 1009
    cuts = [0, 13, 14, 400, 401, 999, 1000]  # shards of 13, 1, 386, 1, 598, 1 ids
    shards = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    crossing = 0
    for seed in range(20):
        x1, y1 = train.get_batch(data, 64, 32, "cpu", train.batch_generator(1337, seed))
        x2, y2 = train.get_batch(shards, 64, 32, "cpu", train.batch_generator(1337, seed))
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        starts = train.batch_generator(1337, seed)
        ix = torch.randint(1000 - 32, (64,), generator=starts)
        crossing += sum(any(s < c <= s + 32 for c in cuts[1:-1]) for s in ix.tolist())
    assert crossing > 50  # many windows run from one shard into the next
    with pytest.raises(ValueError, match="1000 tokens of data are too few for block_size=1000"):
        train.get_batch(shards, 2, 1000, "cpu")
