"""hellaswag.py: per-ending losses against direct computations (our GPT's and transformers' full logits, and a
stub model whose losses are known by hand), batching/padding invariance, sharding over ranks, bad input."""
import io
import json
import math
import os
import urllib.error
import urllib.request

import pytest
import torch
import torch.nn as nn

import hellaswag
from model import GPT, GPTConfig
from tests.adapters import run_hellaswag_scores

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "hellaswag_val_sample.jsonl")


@pytest.fixture(scope="module")
def examples():
    return hellaswag.load_examples(FIXTURE)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 with GPT-2's vocabulary, saved by transformers (large init: losses differ a lot)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2, initializer_range=0.5)
    path = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def encode():
    from bpe import tokenizer_from_spec
    return tokenizer_from_spec({"kind": "gpt2"}).encode


def direct_losses(logits_fn, ctx_ids, end_ids):
    """Sum and mean of -log p(ending token | everything before it), one full-logits pass, position by position."""
    ids = ctx_ids + end_ids
    logp = torch.log_softmax(logits_fn(torch.tensor([ids]))[0].double(), dim=-1)  # (T, V)
    nll = [-logp[t - 1, ids[t]].item() for t in range(len(ctx_ids), len(ids))]
    return sum(nll), sum(nll) / len(nll)


def test_losses_match_our_logits_and_transformers(gpt2_dir, encode, examples):
    from transformers import GPT2LMHeadModel
    ours = GPT.from_pretrained(gpt2_dir).eval()
    hf = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    for ex in examples[:3]:
        sums, means = run_hellaswag_scores(gpt2_dir, ex)
        assert len(sums) == len(means) == 4
        ctx = encode(ex["ctx"])
        for i, ending in enumerate(ex["endings"]):
            end = encode(" " + ending)
            with torch.no_grad():
                for logits_fn in (lambda x: ours(x)[0], lambda x: hf(x).logits):
                    s, m = direct_losses(logits_fn, ctx, end)
                    assert sums[i] == pytest.approx(s, rel=1e-4)
                    assert means[i] == pytest.approx(m, rel=1e-4)
        assert len(set(round(s, 3) for s in sums)) == 4  # the random model really tells the endings apart


def test_losses_and_acc_equal_the_full_logits_path_on_the_fixture(gpt2_dir, encode, examples, monkeypatch):
    """hellaswag.py computes logits only where an ending is scored, in chunks: its losses, acc and acc_norm on
    every example equal those of every position's logits, ours and transformers'."""
    from transformers import GPT2LMHeadModel
    model = GPT.from_pretrained(gpt2_dir)
    hf = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    sums, means = hellaswag.ending_losses(model.eval(), encode, examples, "cpu")  # one batch of 28 rows
    monkeypatch.setattr(hellaswag, "SCORE_ROWS", 7)  # ~80 chunks, some across rows and examples
    chunked = hellaswag.ending_losses(model, encode, examples, "cpu")
    torch.testing.assert_close(chunked, (sums, means), rtol=1e-6, atol=1e-6)
    for logits_fn in (lambda x: model(x)[0], lambda x: hf(x).logits):
        right = right_norm = 0
        for i, ex in enumerate(examples):
            with torch.no_grad():
                scores = [direct_losses(logits_fn, encode(ex["ctx"]), encode(" " + e)) for e in ex["endings"]]
            assert sums[i].tolist() == pytest.approx([s for s, _ in scores], rel=1e-5)
            assert means[i].tolist() == pytest.approx([m for _, m in scores], rel=1e-5)
            right += min(range(4), key=lambda i: scores[i][0]) == ex["label"]
            right_norm += min(range(4), key=lambda i: scores[i][1]) == ex["label"]
        result = hellaswag.evaluate(model, encode, examples, "cpu", batch_size=3)
        assert result == {"acc": right / len(examples), "acc_norm": right_norm / len(examples),
                          "count": len(examples)}


def test_batching_and_padding_match_one_at_a_time(gpt2_dir, encode, examples):
    model = GPT.from_pretrained(gpt2_dir).eval()
    sums, means = hellaswag.ending_losses(model, encode, examples, "cpu")  # rows of very different lengths
    assert sums.shape == means.shape == (len(examples), 4)
    for i, ex in enumerate(examples):
        s, m = hellaswag.ending_losses(model, encode, [ex], "cpu")
        torch.testing.assert_close(sums[i], s[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(means[i], m[0], rtol=1e-5, atol=1e-5)
    right = sum(int(s.argmin()) == ex["label"] for s, ex in zip(sums, examples))
    assert hellaswag.evaluate(model, encode, examples, "cpu", batch_size=3)["acc"] == right / len(examples)


def test_long_context_keeps_its_last_block_size_tokens(gpt2_dir, encode, examples):
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    ex = dict(examples[3], ctx=" ".join([examples[3]["ctx"]] * 3))  # ~100 tokens, block_size is 64
    ctx = encode(ex["ctx"])
    assert len(ctx) > 64
    sums, means = run_hellaswag_scores(gpt2_dir, ex)
    for i, ending in enumerate(ex["endings"]):
        end = encode(" " + ending)
        with torch.no_grad():
            s, m = direct_losses(lambda x: hf(x).logits, ctx[-(64 - len(end)):], end)
        assert sums[i] == pytest.approx(s, rel=1e-4)
        assert means[i] == pytest.approx(m, rel=1e-4)
    with pytest.raises(ValueError, match="block_size=64 has room for 1 to 63"):
        run_hellaswag_scores(gpt2_dir, dict(ex, endings=["word " * 70] * 4))


class Successor(nn.Module):
    """Stub LM over ASCII: at every position it bets on the next character code (logit C there, 0 elsewhere),
    so a token costs LO if it is its predecessor's successor, else HI."""
    V, C = 128, 5.0
    LO, HI = math.log(math.exp(C) + V - 1) - C, math.log(math.exp(C) + V - 1)

    def __init__(self, block_size=256):
        super().__init__()
        self.config = GPTConfig(block_size=block_size, vocab_size=self.V, n_layer=1, n_head=1, n_embd=1)
        self.dropout = nn.Dropout(0.5)  # must be off while scoring

        self.lm_head = nn.Identity()  # its hidden states are the logits

    def hidden_states(self, idx):
        assert idx.shape[1] <= self.config.block_size
        logits = self.C * nn.functional.one_hot((idx + 1) % self.V, self.V).float()  # (B, T, V)
        return self.dropout(logits)


def ascii_encode(text):
    return [ord(c) for c in text]


def test_hand_computed_losses_and_acc_vs_acc_norm():
    model = Successor()
    # after "ab": " q" = 2 misses; " bcdefghij" = ' ' and 'b' miss, c..j are 8 successors; " zz", " bd": 3 misses
    ex = {"ctx": "ab", "endings": ["q", "bcdefghij", "zz", "bd"], "label": 1}
    hits_misses = [(0, 2), (8, 2), (0, 3), (0, 3)]
    sums, means = hellaswag.score_example(model, ascii_encode, ex, "cpu")
    for i, (hits, misses) in enumerate(hits_misses):
        assert sums[i] == pytest.approx(hits * model.LO + misses * model.HI, rel=1e-6)
        assert means[i] == pytest.approx(sums[i] / (hits + misses), rel=1e-6)
    # summed loss prefers the short " q", the per-token mean the long predictable ending (the label)
    assert hellaswag.evaluate(model, ascii_encode, [ex], "cpu") == {"acc": 0.0, "acc_norm": 1.0, "count": 1}
    assert hellaswag.evaluate(model, ascii_encode, [dict(ex, label=0)], "cpu") == {"acc": 1.0, "acc_norm": 0.0,
                                                                                   "count": 1}


def test_too_long_ending_stops_before_scoring():
    model = Successor(block_size=16)  # in training mode, as train.py would pass it
    short = {"ctx": "ab", "endings": ["c", "d", "e", "f"], "label": 0}
    long = dict(short, ind=42, endings=["c", "d", "e", "a sixteen chars"])  # " a sixteen chars": 16 tokens
    assert hellaswag.evaluate(model, ascii_encode, [short, dict(long, endings=["c", "d", "e", "fifteen chars"])],
                              "cpu")["count"] == 2
    with pytest.raises(ValueError, match=r"HellaSwag example 2 \(ind 42\): ending 'a sixteen chars' is 16 tokens"):
        hellaswag.evaluate(model, ascii_encode, [short, short, long, short], "cpu", batch_size=1)
    assert model.training


def test_training_mode_dropout_and_compile_wrapper():
    model = GPT(GPTConfig(block_size=256, vocab_size=128, n_layer=1, n_head=2, n_embd=16, dropout=0.5)).train()
    ex = {"ctx": "The cat sat", "endings": ["on the mat.", "in the sky.", "under it.", "x"], "label": 0}
    first = hellaswag.score_example(model, ascii_encode, ex, "cpu")
    assert model.training  # restored for the training loop
    assert hellaswag.score_example(model, ascii_encode, ex, "cpu") == first  # dropout was off
    assert hellaswag.score_example(torch.compile(model), ascii_encode, ex, "cpu") == first


# ---------------------------------------------------------------------------------------------- sharding
def test_shards_count_each_example_once(examples, monkeypatch):
    model = Successor().eval()
    _, means = hellaswag.ending_losses(model, ascii_encode, examples, "cpu")
    pred = means.argmin(dim=1).tolist()
    # acc_norm is right exactly on the even-numbered examples: 4 of 7
    labelled = [dict(ex, label=p if i % 2 == 0 else (p + 1) % 4) for i, (ex, p) in enumerate(zip(examples, pred))]
    assert hellaswag.evaluate(model, ascii_encode, labelled, "cpu")["acc_norm"] == 4 / 7
    # pretend to be each rank of a world_size-process job, the all-reduce left out: the local counts must add up
    reduced = []
    monkeypatch.setattr(hellaswag.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(hellaswag.dist, "all_reduce", lambda counts: reduced.append(counts.tolist()))
    for world_size in (2, 3):
        reduced.clear()
        for rank in range(world_size):
            hellaswag.evaluate(model, ascii_encode, labelled, "cpu", batch_size=2, rank=rank, world_size=world_size)
        assert [r[2] for r in reduced] == [len(labelled[r::world_size]) for r in range(world_size)]
        assert sum(r[2] for r in reduced) == 7 and sum(r[1] for r in reduced) == 4
    monkeypatch.undo()
    with pytest.raises(ValueError, match="torch.distributed is not initialized"):
        hellaswag.evaluate(model, ascii_encode, labelled, "cpu", rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank=2"):
        hellaswag.evaluate(model, ascii_encode, labelled, "cpu", rank=2, world_size=2)


def test_ddp_and_compile_wrapped_model(examples, tmp_path):
    """nanoGPT's training-time wrapping, DDP(torch.compile(model)), in a one-process Gloo group."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    torch.manual_seed(1)
    model = GPT(GPTConfig(block_size=256, vocab_size=128, n_layer=1, n_head=2, n_embd=16))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(torch.compile(model))
        result = hellaswag.evaluate(wrapped, ascii_encode, examples, "cpu", batch_size=2, rank=0, world_size=1)
    finally:
        dist.destroy_process_group()
    assert result == hellaswag.evaluate(model, ascii_encode, examples, "cpu") and result["count"] == 7


# ------------------------------------------------------------------------------------------------ bad input
def write_lines(tmp_path, lines):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


GOOD = json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"], "label": 1})


@pytest.mark.parametrize("line, message", [
    ('{"ctx": "A man walks.", "endings": ["a", "b"', "not valid JSON"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"], "label": 4}), "label 4 must be"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"], "label": -1}), "label -1 must be"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"], "label": "two"}), "label 'two' must be"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"], "label": True}), "label True must be"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"], "label": "\u00b2"}), "label '\u00b2' must be"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c", "d"]}), "labels are not public"),
    (json.dumps({"ctx": "A man walks.", "endings": ["a", "b", "c"], "label": 0}), "list of 4 strings"),
    (json.dumps({"endings": ["a", "b", "c", "d"], "label": 0}), "'ctx' must be"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_line_names_its_line_number(tmp_path, line, message):
    path = write_lines(tmp_path, [GOOD, "", line, GOOD])  # the bad line is line 3 (blank lines are skipped)
    with pytest.raises(ValueError, match=f"bad.jsonl:3: .*{message}"):
        hellaswag.load_examples(path)


def test_line_not_utf8_names_its_line_number(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((GOOD + "\n" + GOOD.replace("man", "caf\u00e9") + "\n").encode("latin-1"))  # é is byte 14, column 15
    with pytest.raises(ValueError, match=r"latin1.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 15\)"):
        hellaswag.load_examples(str(path))


def test_labels_limit_and_missing_file(tmp_path):
    ex = json.loads(GOOD)
    path = write_lines(tmp_path, [json.dumps(dict(ex, label="3")), GOOD, GOOD])
    loaded = hellaswag.load_examples(path)
    assert [e["label"] for e in loaded] == [3, 1, 1]  # the Hugging Face copy's string labels become ints
    assert len(hellaswag.load_examples(path, limit=2)) == 2
    with pytest.raises(ValueError, match="limit=0"):
        hellaswag.load_examples(path, limit=0)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        hellaswag.load_examples(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="no examples"):
        hellaswag.load_examples(write_lines(tmp_path, [""]))


def test_download_caches_and_offline_error_says_where(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    target = tmp_path / "hs" / "hellaswag_val.jsonl"
    with pytest.raises(FileNotFoundError, match=f"put it at {target}"):
        hellaswag.download("val", str(tmp_path / "hs"))
    assert calls == ["https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"]
    assert not os.listdir(tmp_path / "hs")  # no partial file left behind

    data = open(FIXTURE, "rb").read()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: (calls.append(url), io.BytesIO(data))[1])
    assert hellaswag.download("train", str(tmp_path / "hs")) == str(tmp_path / "hs" / "hellaswag_train.jsonl")
    assert open(tmp_path / "hs" / "hellaswag_train.jsonl", "rb").read() == data
    hellaswag.download("train", str(tmp_path / "hs"))  # cached: no second request
    assert calls[1:] == ["https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_train.jsonl"]
    with pytest.raises(ValueError, match="split='dev'"):
        hellaswag.download("dev", str(tmp_path / "hs"))


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_hf_dir_and_train_out_dir(gpt2_dir, encode, examples, tmp_path, capsys):
    from dataclasses import asdict
    import checkpoints
    hellaswag.main(["--model", gpt2_dir, "--data", FIXTURE, "--limit", "5", "--batch_size", "2", "--device", "cpu"])
    r = hellaswag.evaluate(GPT.from_pretrained(gpt2_dir), encode, examples[:5], "cpu")
    assert f"5 examples, acc {r['acc']:.4f}, acc_norm {r['acc_norm']:.4f}" in capsys.readouterr().out

    # a train.py out_dir: its ckpt.pt and the character tokenizer it was trained with
    chars = "".join(sorted(set(open(FIXTURE).read()) - {"\n"}))
    config = GPTConfig(block_size=256, vocab_size=len(chars), n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(2)
    model = GPT(config)
    checkpoints.save_checkpoint(str(tmp_path / "out" / "ckpt.pt"), {"model": model.state_dict(), "model_args": asdict(config),
                                                             "tokenizer": {"kind": "char", "chars": chars}})
    hellaswag.main(["--model", str(tmp_path / "out"), "--data", FIXTURE, "--device", "cpu"])
    r = hellaswag.evaluate(model, lambda text: [chars.index(c) for c in text], examples, "cpu")
    assert f"7 examples, acc {r['acc']:.4f}, acc_norm {r['acc_norm']:.4f}" in capsys.readouterr().out


def test_cli_errors_are_one_line(gpt2_dir, tmp_path):
    bad = write_lines(tmp_path, [GOOD, json.dumps({"ctx": "x", "endings": ["a", "b", "c", "d"], "label": 7})])
    with pytest.raises(SystemExit, match=r"^error: .*bad.jsonl:2: label 7 must be an integer 0-3"):
        hellaswag.main(["--model", gpt2_dir, "--data", bad, "--device", "cpu"])
    with pytest.raises(SystemExit, match=r"^error: .*not found: `python hellaswag.py --download`"):
        hellaswag.main(["--model", gpt2_dir, "--data", str(tmp_path / "missing.jsonl"), "--device", "cpu"])
    with pytest.raises(SystemExit, match=r"^error: model '.*nowhere' not found: expected resume, one of gpt2"):
        hellaswag.main(["--model", str(tmp_path / "nowhere"), "--data", FIXTURE, "--device", "cpu"])
    with pytest.raises(SystemExit, match="^error: .*dtype='bfloat16' is for CUDA"):
        hellaswag.main(["--model", gpt2_dir, "--data", FIXTURE, "--device", "cpu", "--dtype", "bfloat16"])
