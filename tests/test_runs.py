"""Runs that lose nothing: a diverging run keeps the good checkpoint, out_dir is held by one run at
a time, resume keeps the checkpoint's settings, DDP ranks wait for rank 0's save, errors come once
from rank 0, bad settings are one clear error, long runs say how long they need."""
import os
import subprocess
import sys
import time

import pytest
import torch

import checkpoints
import runtime
import sft
import train
from model import GPT
from tests.test_sft import tiny_run_config
from tests.test_train import REPO, char_data, free_port, one_thread, read_log, tiny_config  # noqa: F401


def weights(out_dir):
    return checkpoints.load_checkpoint(str(out_dir / "ckpt.pt"))


# ------------------------------------------------------------------------------------ divergence
@pytest.mark.parametrize("log_interval", [1, 100])
def test_a_diverging_run_keeps_the_good_checkpoint(char_data, tmp_path, log_interval):
    """Caught at the first logged nan loss, or (logging rarely) at the checkpoint it would write."""
    train.main(tiny_config(char_data, tmp_path, max_iters=4, lr_decay_iters=4, eval_interval=4))
    good = weights(tmp_path)
    with pytest.raises(FloatingPointError, match=r"training diverged at iteration \d+ \(.*nan.*\), so no "
                                                 r"checkpoint was written .*lower learning_rate=1e\+30"):
        train.main(tiny_config(char_data, tmp_path, init_from="resume", learning_rate=1e30, max_iters=8,
                               lr_decay_iters=8, eval_interval=4, log_interval=log_interval))
    kept = weights(tmp_path)
    assert kept["iter_num"] == 4
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    # finite losses but a nan weight: still no checkpoint
    model = GPT.from_checkpoint(kept)
    train.stop_if_diverged(4, {"val": 1.0}, 1e-3, model)
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"iteration 4 \(a weight that is nan or inf\)"):
        train.stop_if_diverged(4, {"val": 1.0}, 1e-3, model)


def test_sft_stops_before_saving_nan_weights_holds_its_out_dir_and_shows_an_eta(tmp_path, one_thread, capsys):
    cfg = tiny_run_config(tmp_path, epochs=1, log_interval=1, eval_train=1, free_prompts=[], gen_length=2)
    sft.run(cfg)
    assert all(", eta " in line for line in capsys.readouterr().out.splitlines() if line.startswith("iter "))
    good = weights(tmp_path / "out")
    with pytest.raises(ValueError, match=r"out/ckpt.pt holds an earlier run: continue it with --init_from=resume"):
        sft.run(cfg)  # a fresh run would have replaced it
    with pytest.raises(FloatingPointError, match=r"training diverged at iteration 4 \(train_loss nan"):
        sft.run(dict(cfg, init_from="resume", epochs=2, learning_rate=1e30, min_lr=0.0, warmup_iters=0))
    assert all(torch.equal(v, weights(tmp_path / "out")["model"][k]) for k, v in good["model"].items())
    sft.run(dict(cfg, overwrite=True, epochs=2))  # asked for: replaced
    assert weights(tmp_path / "out")["iter_num"] == 4


# --------------------------------------------------------------------------------------- out_dir
def test_out_dir_is_held_by_one_run_and_never_silently_replaced(char_data, tmp_path):
    out = tmp_path / "out"
    config = tiny_config(char_data, out, max_iters=2, lr_decay_iters=2, eval_interval=2)
    train.main(config)
    log = (out / "log.jsonl").read_text()
    with pytest.raises(ValueError, match=r"out/ckpt.pt holds an earlier run: continue it with --init_from=resume, "
                                         r"pick another --out_dir, or replace it .* with --overwrite=True"):
        train.main(config)
    lock = runtime.lock_out_dir(str(out))  # another run holds out_dir: its pid is in the error
    try:
        for init_from in ("resume", "scratch"):
            with pytest.raises(ValueError, match=rf"out_dir='.*out' is in use by another run \(pid {os.getpid()}\)"):
                train.main(dict(config, init_from=init_from, overwrite=True))
    finally:
        lock.close()
    assert (out / "log.jsonl").read_text() == log and weights(out)["iter_num"] == 2
    train.main(dict(config, overwrite=True, max_iters=4, lr_decay_iters=4))  # asked for: replaced
    assert weights(out)["iter_num"] == 4 and [r["iter"] for r in read_log(out)][0] == 0
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ValueError, match=r"out_dir='.*file' is a file, not a directory: pick another --out_dir"):
        train.main(tiny_config(char_data, tmp_path / "file"))


# ------------------------------------------------------------------------------------------ resume
def test_resume_keeps_the_checkpoints_schedule_over_a_config_file(char_data, tmp_path):
    out = tmp_path / "out"
    train.main(tiny_config(char_data, out, max_iters=4, lr_decay_iters=4, eval_interval=4))
    config_file = tmp_path / "longer.py"
    config_file.write_text("learning_rate = 0.5\nmin_lr = 0.05\nlr_decay_iters = 100\nmax_iters = 100\n")
    result = subprocess.run([sys.executable, "train.py", str(config_file), f"--out_dir={out}", "--init_from=resume",
                             "--max_iters=6", "--device=cpu"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resume: max_iters = 6 (given on the command line; the checkpoint had 4)" in result.stdout
    assert ("resume: lr_decay_iters = 4 (the checkpoint's, over 100: give --lr_decay_iters=... to change it; "
            "the checkpoint had 4)") in result.stdout
    rows = [r for r in read_log(out) if "lr" in r]
    assert [(r["iter"], r["lr"]) for r in rows[-2:]] == [(4, 3e-4), (5, 3e-4)]  # the checkpoint's min_lr
    # a model shape given on the command line would be ignored: an error; dropout is not shape: it applies
    config = dict(train.DEFAULT_CONFIG, out_dir=str(out), init_from="resume", n_layer=3, n_embd=32)
    with pytest.raises(ValueError, match=r"continues the checkpoint's model, whose shape cannot change: "
                                         r"n_layer=3 \(the checkpoint's model has 1\); drop those settings"):
        train.resumed_config(config, {"n_layer", "n_embd"})
    resumed = train.resumed_config(dict(config, dropout=0.25), {"dropout"})
    assert (resumed["n_layer"], resumed["dropout"]) == (1, 0.25)
    model, _ = train.init_model(train.SimpleNamespace(**resumed), None, 0)
    assert model.config.dropout == 0.25 and model.config.n_layer == 1


# -------------------------------------------------------------------------------------- processes
def _ddp_worker(rank, world_size, port, config, out):
    """A torchrun-like process that notes the process group's timeout, when rank 0's (slowed) plot
    ended and when train.main returned."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    init, plot = torch.distributed.init_process_group, train.plot_log

    def noting_init(*args, timeout=None, **kwargs):
        (out / f"timeout.{rank}").write_text(str(timeout.total_seconds()))
        return init(*args, timeout=timeout, **kwargs)

    def slow_plot(out_dir):
        time.sleep(2)
        (out / "plot_done").write_text(repr(time.time()))
        return plot(out_dir)
    torch.distributed.init_process_group, train.plot_log = noting_init, slow_plot
    train.main(config)
    (out / f"returned.{rank}").write_text(repr(time.time()))


def test_ddp_ranks_wait_for_rank_0s_save_and_round_the_accumulation_up(char_data, tmp_path, capfd):
    config = tiny_config(char_data, tmp_path / "ddp", gradient_accumulation_steps=1, ddp_timeout=123, max_iters=2,
                         lr_decay_iters=2, eval_interval=2, eval_iters=2)
    torch.multiprocessing.spawn(_ddp_worker, nprocs=2, args=(2, free_port(), config, tmp_path))
    assert [float((tmp_path / f"timeout.{r}").read_text()) for r in range(2)] == [123.0, 123.0]
    assert float((tmp_path / "returned.1").read_text()) >= float((tmp_path / "plot_done").read_text())
    assert weights(tmp_path / "ddp")["config"]["gradient_accumulation_steps"] == 2
    out = capfd.readouterr().out
    assert out.count("gradient_accumulation_steps=1 is not a multiple of the 2 processes: using 2 (1 per process)") == 1


def test_under_torchrun_an_error_comes_once_from_rank_0(char_data, tmp_path):
    """The issue's command (config/train_shakespeare_char_cpu.py on 2 processes) with a bad setting: one line
    from rank 0, not one per rank."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "train.py", "config/train_shakespeare_char_cpu.py", "--device=cpu",
                             f"--dataset={char_data}", f"--out_dir={tmp_path}", "--weight_decay=-0.1"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.count("error: ") == 1 and "error: weight_decay=-0.1 must be >= 0\n" in result.stderr


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("setting, message", [
    (dict(weight_decay=-0.1), r"weight_decay=-0.1 must be >= 0"),
    (dict(grad_clip=-1.0), r"grad_clip=-1.0 must be >= 0"),
    (dict(warmup_iters=-5), r"warmup_iters=-5 must be >= 0"),
    (dict(min_lr=1e-2, learning_rate=1e-3), r"min_lr=0.01 is above learning_rate=0.001: .*at most learning_rate"),
    (dict(ddp_timeout=0), r"ddp_timeout=0 must be >= 1"),
    (dict(device="foo"), r"device='foo' is not available here: use one of cpu"),
    (dict(device="cuda"), r"device='cuda' is not available here: use one of cpu"),
])
def test_bad_settings_are_one_clear_error(char_data, tmp_path, setting, message):
    if setting.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=message):
        train.main(tiny_config(char_data, tmp_path, **setting))
    assert not (tmp_path / "log.jsonl").exists()  # refused before anything ran


# --------------------------------------------------------------------------------------- progress
def test_iteration_lines_show_an_eta_and_slow_cpu_runs_are_warned(char_data, tmp_path, capsys, monkeypatch):
    predictions = []
    monkeypatch.setattr(train, "warn_if_slow", lambda c, device, per_iter, left: predictions.append((per_iter, left)))
    train.main(tiny_config(char_data, tmp_path, max_iters=6, lr_decay_iters=6, eval_interval=6))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("iter ")]
    assert len(lines) == 6 and all(", eta " in line for line in lines) and lines[-1].endswith(", eta 0s")
    assert len(predictions) == 1 and predictions[0][0] > 0 and predictions[0][1] == 3  # after 3 of 6 iterations
    monkeypatch.undo()
    c = train.SimpleNamespace(**dict(train.DEFAULT_CONFIG, n_layer=6, n_embd=384, block_size=256, batch_size=64))
    text = train.warn_if_slow(c, "cpu", 2.0, 5000)
    assert text.startswith("warning: at 2.00s per iteration this CPU run needs about 2h46m more")
    assert "is meant for a GPU" in text and text in capsys.readouterr().out
    assert train.warn_if_slow(c, "cuda", 2.0, 5000) is None and train.warn_if_slow(c, "cpu", 0.01, 5000) is None
    assert [runtime.duration(s) for s in (0.4, 59, 61, 3599, 3600 * 25 + 120)] == ["0s", "59s", "1m01s", "59m59s",
                                                                              "25h02m"]
