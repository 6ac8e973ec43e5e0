"""Scale and memory: FSDP (fully_shard) on 2 gloo processes against one process, resume across
process counts, activation checkpointing, LoRA in train.py, the logged gradient norm, bad settings."""
import os
import subprocess
import sys

import pytest
import torch

import checkpoints
import model as model_lib
import train
from tests.test_train import REPO, char_data, curve, free_port, one_thread, read_log, tiny_config  # noqa: F401

SCALE = dict(n_layer=2, max_iters=12, lr_decay_iters=12, eval_interval=6, eval_iters=2,
             gradient_accumulation_steps=4, dropout=0.0)


def _worker(rank, world_size, port, config):
    """One torchrun-like process: the environment torchrun would set, then train.main."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train.main(config)


def torchrun(config, nproc=2):
    torch.multiprocessing.spawn(_worker, nprocs=nproc, args=(nproc, free_port(), config))


def assert_same_curve(a, b, tol):
    assert len(a) == len(b)
    for s, d in zip(a, b):
        assert s.keys() == d.keys() and s["iter"] == d["iter"]
        for k in s:
            assert d[k] == pytest.approx(s[k], abs=tol), (k, s, d)


def test_fsdp_two_processes_equal_one_process_and_resume_anywhere(char_data, tmp_path):
    """FSDP on 2 processes x 2 micro-steps == 1 process x 4 micro-steps (loss, grad_norm, val loss);
    its checkpoint has the single-process layout: one process resumes it, and sample.py reads it."""
    train.main(tiny_config(char_data, tmp_path / "single", **SCALE))
    torchrun(tiny_config(char_data, tmp_path / "fsdp", fsdp=True, **SCALE))
    single, fsdp = curve(read_log(tmp_path / "single")), curve(read_log(tmp_path / "fsdp"))
    assert len(single) == 12 + 3 and all("grad_norm" in r for r in single if "loss" in r)
    assert_same_curve(single, fsdp, 1e-4)
    a = checkpoints.load_checkpoint(str(tmp_path / "single" / "ckpt.pt"))
    b = checkpoints.load_checkpoint(str(tmp_path / "fsdp" / "ckpt.pt"))
    assert a["model"].keys() == b["model"].keys() and a["optimizer"].keys() == b["optimizer"].keys()
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-5)
    # stopped at 6 by FSDP, resumed to 12 by FSDP: the straight FSDP curve
    half = dict(SCALE, max_iters=6)
    torchrun(tiny_config(char_data, tmp_path / "split", fsdp=True, **half))
    torchrun(tiny_config(char_data, tmp_path / "split", fsdp=True, init_from="resume", **SCALE))
    assert_same_curve(fsdp, curve(read_log(tmp_path / "split")), 1e-5)
    # an FSDP checkpoint resumed by one process, and sampled
    train.main(tiny_config(char_data, tmp_path / "fsdp", init_from="resume",
                           **dict(SCALE, max_iters=14)))
    gpt, tok = model_lib.load_model(str(tmp_path / "fsdp"), None, "cpu")
    out = gpt.generate(torch.tensor([tok.encode("def ")]), 8, temperature=0)
    assert out.shape == (1, 12)


def test_activation_checkpointing_gives_identical_losses(char_data, tmp_path):
    config = dict(SCALE, dropout=0.1, max_iters=4, eval_interval=4)
    train.main(tiny_config(char_data, tmp_path / "plain", **config))
    train.main(tiny_config(char_data, tmp_path / "ckpt", activation_checkpointing=True, **config))
    assert curve(read_log(tmp_path / "plain")) == curve(read_log(tmp_path / "ckpt"))


def test_logged_grad_norm_is_torchs(char_data, tmp_path):
    """The grad_norm of iteration 0 equals torch.nn.utils.clip_grad_norm_ on the same batch."""
    config = tiny_config(char_data, tmp_path / "run", max_iters=1, grad_clip=1.0)
    train.main(config)
    logged = next(r["grad_norm"] for r in read_log(tmp_path / "run") if "grad_norm" in r)
    torch.manual_seed(config["seed"])
    data_dir, meta = train.load_meta(config["dataset"])
    model, _ = train.init_model(train.SimpleNamespace(**config), meta, 0)
    splits = train.load_splits(data_dir, meta, config["block_size"])
    x, y = train.get_batch(splits["train"], config["batch_size"], config["block_size"], "cpu",
                           train.batch_generator(config["seed"], 0, 0, 0))
    model(x, y)[1].backward()
    want = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    assert logged == pytest.approx(want.item(), rel=1e-5)


def test_lora_training_saves_an_ordinary_model(char_data, tmp_path):
    config = tiny_config(char_data, tmp_path / "lora", lora_rank=4, lora_alpha=8.0, n_layer=2,
                         learning_rate=1e-2, max_iters=12, lr_decay_iters=12, eval_interval=12)
    train.main(config)
    rows = [r for r in read_log(tmp_path / "lora") if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"]
    ckpt = checkpoints.load_checkpoint(str(tmp_path / "lora" / "ckpt.pt"))
    assert not any("lora" in k or ".base." in k for k in ckpt["model"])
    model_lib.GPT.from_checkpoint(ckpt)  # loads as a plain model


@pytest.mark.parametrize("flags, message", [
    (["--fsdp=True"], "fsdp=True shards the model over processes: launch with torchrun"),
    (["--lora_rank=-1"], "lora_rank=-1 must be >= 1"),
    (["--lora_rank=64"], r"lora_rank=64 must be in \[1, 32\]"),
    (["--lora_rank=2", "--lora_targets=embedding"], "lora_targets: 'embedding' is not one of"),
])
def test_bad_scale_settings_are_one_line_errors(char_data, tmp_path, flags, message):
    args = [f"--dataset={char_data}", f"--out_dir={tmp_path}", "--device=cpu", "--n_layer=1",
            "--n_head=2", "--n_embd=32", "--block_size=32", "--max_iters=1"]
    result = subprocess.run([sys.executable, "train.py", *args, *flags], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert __import__("re").search(message, result.stderr), result.stderr
