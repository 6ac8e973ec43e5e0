"""sft.py: the Q/A reader, masks and padding, packing, the loss, and a tiny end-to-end fine-tune."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import files
import model as model_lib
import sample
import checkpoints
import sft
from model import GPT, GPTConfig
from tests.adapters import get_sft_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_gpt(vocab_size=50, block_size=32, rope=False, seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=16, rope=rope)
    return GPT(config).eval()


# ----------------------------------------------------------------------------- masks and padding
def test_get_sft_batch_against_direct_construction():
    eot, pad = 1, 0
    examples = [([10, 11, 12], [20, 21]), ([13], [22, 23, 24, 25]), ([14, 15], [26])]
    inputs, targets = get_sft_batch(examples, eot, pad)
    # built directly, position by position: row = prompt + answer + [eot], T = longest row - 1
    rows = [p + a + [eot] for p, a in examples]
    T = max(len(r) for r in rows) - 1
    want_x = torch.full((3, T), pad)
    want_y = torch.full((3, T), -100)
    for b, ((p, a), r) in enumerate(zip(examples, rows)):
        for t in range(len(r) - 1):
            want_x[b, t] = r[t]
            if t + 1 >= len(p):  # the token to predict is an answer token or eot
                want_y[b, t] = r[t + 1]
    assert inputs.dtype == targets.dtype == torch.long
    assert torch.equal(inputs, want_x) and torch.equal(targets, want_y)
    # the learned targets are exactly each answer followed by eot
    for b, (p, a) in enumerate(examples):
        assert targets[b][targets[b] != -100].tolist() == a + [eot]


def test_dynamic_padding_is_per_batch():
    examples = [([5, 6], [7]), ([5] * 30, [7] * 30)]
    x1, _ = get_sft_batch(examples[:1], eot_id=1, pad_id=0)
    x2, _ = get_sft_batch(examples, eot_id=1, pad_id=0)
    assert x1.shape == (1, 3)  # its own longest row (4 tokens) minus one, not the dataset's
    assert x2.shape == (2, 60)


def test_loss_is_mean_cross_entropy_over_answer_and_eot_only():
    model = tiny_gpt()
    examples = [([3, 4, 5, 6], [7, 8, 9]), ([3, 10], [11, 12, 13, 14, 15])]
    inputs, targets = get_sft_batch(examples, eot_id=2, pad_id=0)
    logits, loss = model(inputs, targets)
    # direct: log-softmax at every position whose next token is an answer token or eot
    terms = []
    for b, (p, a) in enumerate(examples):
        row = p + a + [2]
        for t in range(len(p) - 1, len(row) - 1):
            terms.append(-F.log_softmax(logits[b, t], dim=-1)[row[t + 1]])
    assert len(terms) == sum(len(a) + 1 for _, a in examples)
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    # changing a question token's target (a prompt token after the first) changes nothing
    examples2 = [([3, 4, 40, 6], [7, 8, 9]), examples[1]]
    inputs2, targets2 = get_sft_batch(examples2, eot_id=2, pad_id=0)
    assert torch.equal(targets2, targets)  # position 1 predicted 5, now 40: masked either way
    # the gradient reaches the logits only where an answer token or eot is the target: none flows from the
    # question's tokens or the padding, whatever they are
    logits = logits.detach().requires_grad_()
    F.cross_entropy(logits.view(-1, 50), targets.view(-1), ignore_index=-100).backward()
    learned = targets != -100
    assert logits.grad[~learned].abs().max() == 0 and (logits.grad[learned].abs().amax(-1) > 0).all()
    # and padding content is invisible: a different pad id gives the same loss
    inputs3, targets3 = get_sft_batch(examples, eot_id=2, pad_id=33)
    torch.testing.assert_close(model(inputs3, targets3)[1], loss)


def test_truncation_cuts_the_end_of_the_answer():
    examples = [([1, 2, 3], [4, 5, 6, 7] + [0]), ([1], [4, 0])]
    cut, n = sft.truncate(examples, max_length=5)
    assert n == 1
    assert cut[0] == ([1, 2, 3], [4, 5])  # prompt kept, answer (and eot) cut from the end
    assert cut[1] == examples[1]
    with pytest.raises(ValueError, match="max_length"):
        sft.truncate([([1, 2, 3, 4, 5], [6, 0])], max_length=5)  # nothing of the answer would be left


# ----------------------------------------------------------------------------- packing
@pytest.mark.parametrize("rope", [False, True])
def test_packing_blocks_attention_between_examples(rope):
    model = tiny_gpt(rope=rope)
    examples = [([3, 4, 5], [6, 7]), ([8], [9, 10, 11, 12]), ([13, 14], [15]), ([16, 17, 18, 19], [20, 21, 22])]
    rows = [sft.make_row(p, a + [2]) for p, a in examples]
    packed = sft.pack([len(x) for x, _ in rows], block_size=12)
    assert packed == [[0, 1], [2, 3]]  # input lengths 5, 5, 3, 7 in rows of 12
    inputs, targets, positions, docs = sft.packed_batch([[rows[i] for i in r] for r in packed], pad_id=0)
    logits, loss = model(inputs, targets, attn_mask=docs, positions=positions)
    # each example alone, with the default causal mask and positions 0..n-1
    alone_terms = []
    for b, r in enumerate(packed):
        start = 0
        for i in r:
            x, y = get_sft_batch([examples[i]], eot_id=2, pad_id=0)
            alone, alone_loss = model(x, y)
            n = x.size(1)
            torch.testing.assert_close(logits[b, start:start + n], alone[0], atol=1e-5, rtol=1e-5)
            alone_terms.append(F.cross_entropy(alone[0], y[0], ignore_index=-100, reduction="sum"))
            start += n
    n_learned = sum(len(a) + 1 for _, a in examples)
    torch.testing.assert_close(loss, torch.stack(alone_terms).sum() / n_learned)


def test_pack_and_mask_shapes():
    for pack in (sft.first_fit, sft.pack):
        assert pack([5, 5, 5, 3], block_size=10) == [[0, 1], [2, 3]]
        assert pack([10, 1], block_size=10) == [[0], [1]]
        assert pack([6, 6, 4, 4], block_size=10) == [[0, 2], [1, 3]]  # first fit: the 4s fill the gaps
        assert pack([], block_size=10) == []
    rows = [[([1, 2], [-100, 3])], [([4, 5, 6], [7, 8, 9]), ([1], [2])]]
    inputs, targets, positions, docs = sft.packed_batch(rows, pad_id=0)
    mask = docs.mask()
    assert inputs.tolist() == [[1, 2, 0, 0], [4, 5, 6, 1]]
    assert targets.tolist() == [[-100, 3, -100, -100], [7, 8, 9, 2]]
    assert positions.tolist() == [[0, 1, 0, 1], [0, 1, 2, 0]]
    want = torch.zeros(2, 4, 4, dtype=torch.bool)
    for b, segs in enumerate([[(0, 2), (2, 4)], [(0, 3), (3, 4)]]):  # (start, end) of each segment, padding included
        for s, e in segs:
            for i in range(s, e):
                want[b, i, s:i + 1] = True
    assert torch.equal(mask, want)


@pytest.mark.parametrize("block_size", [1, 7, 128])
def test_pack_gives_the_rows_of_first_fit(block_size):
    # the tournament tree against the readable scan, on random lengths: short, long, and a mix
    gen = torch.Generator().manual_seed(block_size)
    for low, high, n in [(1, block_size, 2000), (1, max(1, block_size // 8), 1000),
                         (max(1, block_size // 2), block_size, 1000), (1, block_size, 3)]:
        lengths = torch.randint(low, high + 1, (n,), generator=gen).tolist()
        assert sft.pack(lengths, block_size) == sft.first_fit(lengths, block_size)


def test_rank_share_gives_every_rank_the_same_steps():
    plans = [list("abcde"), list("fghij")]  # two epochs of 5 batches
    shares = [sft.rank_share(plans, rank, 2) for rank in range(2)]
    assert shares == [[["a", "c"], ["f", "h"]], [["b", "d"], ["g", "i"]]]  # the 5th batch cannot go to both: dropped
    assert sft.rank_share(plans, 0, 1) == plans
    # an epoch with fewer batches than processes (packing can make one epoch shorter) is an error, not a 0/0 loss
    with pytest.raises(ValueError, match=r"an epoch of 1 batch\(es\) gives no step to each of 2 process"):
        sft.rank_share([list("abc"), list("d")], 1, 2)


# ----------------------------------------------------------------------------- the Q/A reader
def test_read_blocks_multiline_and_blank_lines(tmp_path):
    p = tmp_path / "qa.txt"
    p.write_text("\n<|question|>\nWhat is 2+2?\n<|answer|>\n4\n\n"
                 "<|question|>\n두 줄\n질문\n<|answer|>\n첫 줄\n\n둘째 줄\n\n", encoding="utf-8")
    pairs, problems = files.read_qa_file(p)
    assert pairs == [("What is 2+2?", "4"), ("두 줄\n질문", "첫 줄\n\n둘째 줄")]
    assert problems == []


def test_read_blocks_reports_missing_answers_with_line_numbers(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("stray text\n<|question|>\nq1\n<|answer|>\na1\n<|question|>\nq2 has no answer\n"
                 "<|question|>\nq3\n<|answer|>\n\n<|question|>\nq4\n<|answer|>\na4\n<|answer|>\norphan\n",
                 encoding="utf-8")
    pairs, problems = files.read_qa_file(p)
    assert pairs == [("q1", "a1"), ("q4", "a4")]
    assert problems == [f"{p}:1: text before the first <|question|>",
                        f"{p}:6: question without an answer",
                        f"{p}:8: question without an answer",  # an empty answer counts as none
                        f"{p}:16: <|answer|> without a <|question|> before it"]
    with pytest.raises(ValueError, match=r"strict=True.*bad.txt:1"):
        files.read_qa_file(p, strict=True)


def test_read_jsonl(tmp_path):
    p = tmp_path / "qa.jsonl"
    rows = [{"q": "What is 1+1?", "a": "2"}, {"q": "no answer"}, {"q": "", "a": "no question"},
            {"q": "한국어?", "a": "네"}]
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    pairs, problems = files.read_qa_file(p, question_field="q", answer_field="a")
    assert pairs == [("What is 1+1?", "2"), ("한국어?", "네")]
    assert problems == [f"{p}:2: row without an answer (field 'a')", f"{p}:3: row without a question (field 'q')"]
    with pytest.raises(ValueError, match="qa.jsonl:2"):
        files.read_qa_file(p, strict=True, question_field="q", answer_field="a")
    # the default field names find nothing here: every row is reported
    assert len(files.read_qa_file(p)[1]) == 4


def test_read_only_newlines_end_lines(tmp_path):
    # U+2028, \x85 and \f are line breaks to str.splitlines, but a JSON string may hold them raw
    p = tmp_path / "sep.jsonl"
    rows = [{"question": "a\u2028b", "answer": "c\x85d"}, {"question": "no answer"}]
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), encoding="utf-8")
    assert files.read_qa_file(p) == ([("a\u2028b", "c\x85d")], [f"{p}:2: row without an answer (field 'answer')"])
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes("<|question|>\r\nq\u2028x\r\n<|answer|>\r\none\ftwo\r\nthree\r\n"
                     "<|question|>\r\nno answer\r\n".encode())
    assert files.read_qa_file(crlf) == ([("q\u2028x", "one\ftwo\nthree")], [f"{crlf}:6: question without an answer"])


def test_read_skips_a_byte_order_mark(tmp_path):
    blocks, rows = tmp_path / "bom.txt", tmp_path / "bom.jsonl"
    blocks.write_text("<|question|>\nq\n<|answer|>\na\n", encoding="utf-8-sig")  # -sig: a BOM first
    rows.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8-sig")
    for p in (blocks, rows):
        assert files.read_qa_file(p, strict=True) == ([("q", "a")], [])


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        files.read_qa_file(tmp_path / "nope.txt")
    bad_json = tmp_path / "x.jsonl"
    bad_json.write_text('{"question": "a", "answer": "b"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"x.jsonl:2: not valid JSON"):
        files.read_qa_file(bad_json)
    not_obj = tmp_path / "y.jsonl"
    not_obj.write_text('["a", "b"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"y.jsonl:1: a row must be a JSON object"):
        files.read_qa_file(not_obj)
    latin1 = tmp_path / "z.txt"
    latin1.write_bytes("<|question|>\nq\n<|answer|>\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"z.txt:4: not valid UTF-8"):
        files.read_qa_file(latin1)


def test_demo_dataset():
    pairs, problems = files.read_qa_file(os.path.join(ROOT, "data/sft/train.txt"), strict=True)
    held, held_problems = files.read_qa_file(os.path.join(ROOT, "data/sft/heldout.jsonl"), strict=True)
    assert 100 <= len(pairs) <= 200 and len(held) == 20 and not problems and not held_problems
    hangul = lambda s: any("\uac00" <= c <= "\ud7a3" for c in s)
    n_ko = sum(hangul(q) for q, _ in pairs)
    assert 40 <= n_ko <= len(pairs) - 40  # both languages well represented
    assert len({q for q, _ in pairs}) == len(pairs)  # no duplicate questions
    train_q, train_a = {q for q, _ in pairs}, {a for _, a in pairs}
    for q, a in held:  # paraphrases: new wording, an answer the training set teaches
        assert q not in train_q and a in train_a
    assert sum(hangul(q) for q, _ in held) == 10


# ----------------------------------------------------------------------------- tokenization and marker tokens
def tiktoken_gpt2():
    """tiktoken's GPT-2 encoding, built offline from bpe.py's cached rank table (the peer)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    import bpe
    return tiktoken.Encoding("gpt2-offline", pat_str=bpe.GPT2_SPLIT_PATTERN,
                             mergeable_ranks=load_tiktoken_bpe(str(bpe.gpt2_ranks_path())),
                             special_tokens={"<|endoftext|>": 50256})


def test_plain_markers_tokenize_like_tiktoken():
    from bpe import tokenizer_from_spec, tokenizer_spec
    import bpe
    enc = tiktoken_gpt2()
    tok = bpe.gpt2_tokenizer()
    assert tokenizer_spec(tok) == {"kind": "gpt2"}
    codec = tokenizer_from_spec(tokenizer_spec(tok))
    pairs = [("What is a stack?", "A LIFO collection."),
             ("스택이란 무엇인가요?", "나중에 넣은 것을 먼저 꺼냅니다.")]
    for (q, a), (p, c) in zip(pairs, sft.encode_pairs(codec, pairs)):
        assert p == enc.encode(f"<|question|>\n{q}\n<|answer|>\n")  # markers are ordinary text for GPT-2
        assert c == enc.encode(a) + [50256]


def test_special_markers_add_mean_initialized_rows():
    from bpe import tokenizer_from_spec, tokenizer_spec
    import bpe
    tok = sft.add_marker_tokens(bpe.gpt2_tokenizer())
    q_id, a_id = tok.special_tokens["<|question|>"], tok.special_tokens["<|answer|>"]
    assert (q_id, a_id) == (50257, 50258) and tok.n_vocab == 50259
    codec = tokenizer_from_spec(tokenizer_spec(tok))  # the spec a checkpoint stores: sample.py decodes it
    (prompt, completion), = sft.encode_pairs(codec, [("What is a stack?", "A LIFO collection.")])
    enc = tiktoken_gpt2()
    assert prompt == [q_id] + enc.encode("\nWhat is a stack?\n") + [a_id] + enc.encode("\n")
    want = "<|question|>\nWhat is a stack?\n<|answer|>\nA LIFO collection.<|endoftext|>"
    assert codec.decode(prompt + completion) == want
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50257, n_layer=1, n_head=2, n_embd=8))
    old = model.transformer.wte.weight.detach().clone()
    sft.init_new_rows(model, [q_id, a_id], n_old=50257)
    W = model.transformer.wte.weight
    assert W.shape == (50259, 8) and model.config.vocab_size == 50259
    assert torch.equal(W[:50257], old)
    torch.testing.assert_close(W[q_id], old.mean(0))
    torch.testing.assert_close(W[a_id], old.mean(0))
    assert model.lm_head.weight is W  # still tied
    logits, _ = model(torch.tensor([[q_id, 5, a_id]]))
    assert logits.shape == (1, 3, 50259)
    # a padded vocab already has the rows: they are reset to the mean, not grown
    model2 = GPT(GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=8))
    mean = model2.transformer.wte.weight[:50257].detach().mean(0)
    sft.init_new_rows(model2, [q_id, a_id], n_old=50257)
    assert model2.config.vocab_size == 50304
    torch.testing.assert_close(model2.transformer.wte.weight[a_id], mean)


# ----------------------------------------------------------------------------- end to end
TINY_PAIRS = [("What is a stack?", "Last in, first out."), ("What is a queue?", "First in, first out."),
              ("스택이란?", "나중에 넣은 것을 먼저 꺼냅니다."), ("What is 2+2?", "4")]


def tiny_run_config(tmp_path, **overrides):
    train_file = tmp_path / "train.txt"
    train_file.write_text("".join(f"<|question|>\n{q}\n<|answer|>\n{a}\n\n" for q, a in TINY_PAIRS), encoding="utf-8")
    val_file = tmp_path / "val.jsonl"
    val_file.write_text(json.dumps({"question": "What's a stack?", "answer": "Last in, first out."}) + "\n")
    cfg = dict(sft.DEFAULT_CONFIG, out_dir=str(tmp_path / "out"), tokenizer="bpe:300", special_tokens=True,
               train_file=str(train_file), val_file=str(val_file), n_layer=2, n_head=2, n_embd=64, block_size=64,
               epochs=40, batch_size=2, learning_rate=1e-2, min_lr=1e-3, warmup_iters=5, log_interval=20,
               device="cpu", free_prompts=["What is a heap?"])
    assert set(overrides) <= set(sft.DEFAULT_CONFIG), set(overrides) - set(sft.DEFAULT_CONFIG)
    cfg.update(overrides)
    return cfg


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and much faster than on two when the machine is busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("packing", [False, True])
def test_tiny_model_learns_the_pairs_and_sample_py_loads_it(tmp_path, packing, one_thread,
                                                              capsys):
    cfg = tiny_run_config(tmp_path, packing=packing)
    result = sft.run(cfg)
    assert result["exact_match_train"] == {"before": 0.0, "after": 1.0, "count": 4}
    assert [r["after"] for r in result["train"]] == [a for _, a in TINY_PAIRS]
    assert result["steps"] == (40 if packing else 80)  # packed: all 4 examples in one row, 1 step per epoch
    losses = [e["train_loss"] for e in result["epochs"]]
    assert len(losses) == 40 and losses[-1] < 0.05 * losses[0]
    # the files: answers.json, log.jsonl in train.py's row format, a checkpoint sample.py can load
    out = tmp_path / "out"
    assert json.loads((out / "answers.json").read_text(encoding="utf-8"))["exact_match_train"]["after"] == 1.0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["iter"] for r in train_rows] == list(range(20, result["steps"] + 1, 20))
    assert all({"iter", "loss", "lr", "dt_ms", "tokens_per_sec"} <= set(r) for r in train_rows)
    assert [r["epoch"] for r in rows if "val_loss" in r] == list(range(1, 41))
    model, codec = model_lib.load_model("resume", str(out), "cpu")
    for q, a in TINY_PAIRS:
        ids = codec.encode(f"<|question|>\n{q}\n<|answer|>\n", allowed_special="all")
        new = model.generate(torch.tensor([ids]), 30, temperature=0.0, eos_id=codec.eot_id)[0, len(ids):].tolist()
        assert new[-1] == codec.eot_id and codec.decode(new[:-1]) == a
    # sample.py --question wraps the question in the format the checkpoint was trained with
    q, a = TINY_PAIRS[0]
    capsys.readouterr()
    sample.main([f"--init_from={out}", f"--question={q}", "--temperature=0", "--num_samples=1",
                 "--max_new_tokens=30", "--device=cpu"])
    want = f"<|question|>\n{q}\n<|answer|>\n{a}<|endoftext|>\n---------------\n"
    assert capsys.readouterr().out == want


def test_show_example_and_cli_errors(tmp_path, capsys):
    cfg = tiny_run_config(tmp_path)
    args = [f"--{k}={cfg[k]}" for k in ("tokenizer", "train_file", "val_file", "device")]
    sft.main(args + ["--show_example=2", "--special_tokens=True"])
    out = capsys.readouterr().out
    assert "the loss sees only: '나중에 넣은 것을 먼저 꺼냅니다.<|endoftext|>'" in out
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    sft.main([a for a in args if not a.startswith("--val_file")] + ["--val_file=", "--val_fraction=0.25",
                                                                     "--show_example=0"])
    assert "3 training and 1 held-out pairs" in capsys.readouterr().out  # held out from train_file
    with pytest.raises(SystemExit, match="examples 0..3"):
        sft.main(args + ["--show_example=9"])
    with pytest.raises(SystemExit, match="max_length=99 is longer than the model's block_size=64"):
        sft.main(args + ["--block_size=64", "--max_length=99"])
    bad = tmp_path / "bad.txt"
    bad.write_text("<|question|>\nq\n<|answer|>\na\n<|question|>\nno answer\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.txt:5: question without an answer"):
        sft.main(args + [f"--train_file={bad}", "--strict=True"])
    with pytest.raises(SystemExit, match="unknown config key 'epoch'"):
        sft.main(["--epoch=3"])
    with pytest.raises(SystemExit, match="batch_size=0 must be >= 1"):
        sft.main(args + ["--batch_size=0"])
    with pytest.raises(SystemExit, match=r"init_from=resume: no checkpoint at .*nowhere.ckpt\.pt; point --out_dir"):
        sft.main(args + ["--init_from=resume", f"--out_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(SystemExit, match="write bpe:N"):
        sft.main(args + ["--tokenizer=bpe:big"])
    # a bpe.py model without <|endoftext|>: answers would have no end (was a TypeError, with markers or without)
    import bpe
    no_eot = tmp_path / "no_eot"
    bpe.train_bpe("What is a stack? Last in, first out. " * 5, 270).save(no_eot)
    for special in ("False", "True"):
        with pytest.raises(SystemExit, match=r"tokenizer='.*no_eot': the tokenizer has no <\|endoftext\|> token"):
            sft.main(args[1:] + [f"--tokenizer={no_eot}", f"--special_tokens={special}"])


def test_starts_from_a_checkpoint_dir_resume_and_hf_weights(tmp_path, one_thread):
    first = sft.run(tiny_run_config(tmp_path, epochs=30))
    assert first["exact_match_train"]["after"] == 1.0
    # a directory holding a ckpt.pt (train.py's or ours): the loaded model already knows the answers
    again = sft.run(tiny_run_config(tmp_path, init_from=str(tmp_path / "out"), out_dir=str(tmp_path / "out2"),
                                    epochs=1, learning_rate=1e-5, min_lr=1e-6, warmup_iters=0, dropout=0.1))
    assert again["exact_match_train"]["before"] == 1.0
    # --dropout applies to a checkpoint start too (it was silently the checkpoint's 0.0)
    assert checkpoints.load_checkpoint(tmp_path / "out2" / "ckpt.pt")["model_args"]["dropout"] == 0.1
    # resume: out_dir's own run goes on to a second epoch (its answers before training are the saved ones)
    resumed = sft.run(tiny_run_config(tmp_path, init_from="resume", out_dir=str(tmp_path / "out2"), epochs=2,
                                      learning_rate=1e-5, min_lr=1e-6, warmup_iters=0))
    assert resumed["exact_match_train"]["before"] == 1.0
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]


def test_starts_from_hugging_face_gpt2_weights_with_new_marker_tokens(tmp_path, one_thread):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf_dir = tmp_path / "hf"
    GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=16, n_layer=1, n_head=2)).save_pretrained(hf_dir)
    cfg = tiny_run_config(tmp_path, init_from=str(hf_dir), epochs=1, eval_train=1, free_prompts=[],
                          gen_length=3)
    result = sft.run(cfg)
    assert len(result["epochs"]) == 1
    model, codec = model_lib.load_model("resume", cfg["out_dir"], "cpu")
    assert model.config.vocab_size == 50259  # GPT-2's 50257 + <|question|> + <|answer|>
    assert codec.encode("<|question|><|answer|>", allowed_special="all") == [50257, 50258]


class Crash(Exception):
    pass


def test_killed_and_resumed_equals_a_straight_run(tmp_path, one_thread, monkeypatch):
    """Resume continues step, epoch, schedule, RNG (dropout), optimizer, epoch sums and log exactly
    (it restarted at epoch 1 with warmup, and erased the log)."""
    common = dict(epochs=3, batch_size=1, save_interval=3, log_interval=1, dropout=0.1, keep_best=True)
    straight = sft.run(tiny_run_config(tmp_path, **common))
    out, crashed = tmp_path / "out", tmp_path / "crashed"
    cfg = tiny_run_config(tmp_path, out_dir=str(crashed), **common)
    steps, real_step = [], sft.train_step

    def step_then_crash(*args):
        if len(steps) == 7:  # 4 steps per epoch: the last checkpoint is step 6's, mid-epoch 2
            raise Crash
        steps.append(1)
        return real_step(*args)
    monkeypatch.setattr(sft, "train_step", step_then_crash)
    with pytest.raises(Crash):
        sft.run(cfg)
    assert checkpoints.load_checkpoint(crashed / "ckpt.pt")["iter_num"] == 6
    monkeypatch.setattr(sft, "train_step", real_step)
    args = [f"--out_dir={crashed}", "--init_from=resume", "--device=cpu"]
    with pytest.raises(SystemExit, match="n_layer=3 .*the checkpoint's model has 2"):  # a shape cannot change
        sft.main(args + ["--n_layer=3"])
    resumed = sft.main(args)  # the checkpoint's config: nothing else given
    a, b = (checkpoints.load_checkpoint(d / "ckpt.pt") for d in (out, crashed))
    assert a["iter_num"] == b["iter_num"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    drop = lambda r: {k: v for k, v in r.items() if k not in ("dt_ms", "tokens_per_sec")}
    logs = [[drop(json.loads(line)) for line in (d / "log.jsonl").read_text().splitlines()] for d in (out, crashed)]
    assert logs[0] == logs[1] and [r["iter"] for r in logs[0] if "loss" in r] == list(range(1, 13))
    assert resumed["epochs"] == straight["epochs"] and resumed["train"] == straight["train"]
    assert resumed["tokens_per_sec"] > 0 and resumed["steps"] == straight["steps"] == 12
    # keep_best: best/ckpt.pt is the epoch with the lowest held-out loss
    val = [e["val_loss"] for e in straight["epochs"]]
    best = checkpoints.load_checkpoint(out / "best" / "ckpt.pt")
    assert best["iter_num"] == 4 * (val.index(min(val)) + 1) and best["best_val_loss"] == min(val)
    with pytest.raises(SystemExit, match="finished its 12 steps .*give --epochs=N with N > 3"):
        sft.main(args)
