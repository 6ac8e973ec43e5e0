"""Nothing lost, nothing executed, no dead ends: atomic writes (stale temp files, fsync, symlinks,
a full disk, a tokenizer's two files as one unit), a torn log.jsonl, the loss plot and its command,
output cut by a closed pipe, config files (.json read, other files refused, errors with their
line), and hand-edited tokenizer files."""
import contextlib
import errno
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import bpe
import checkpoints
import files
import model
import runtime
import sample
import sft
import token_lengths
from configurator import apply_overrides
from model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parent.parent
HELLASWAG = ROOT / "tests" / "fixtures" / "hellaswag_val_sample.jsonl"
DEFAULTS = {"batch_size": 12, "learning_rate": 6e-4, "betas": (0.9, 0.95), "out_dir": "out"}


def write_bytes(f, data=b"new"):
    f.write(data)


# ----------------------------------------------------------------------------- atomic writes
def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    # a writer killed in the middle of atomic_write (os._exit: no cleanup runs, as with SIGKILL)
    killed = ("import os, sys; sys.path.insert(0, sys.argv[1]); import files; "
              "files.atomic_write(sys.argv[2], lambda f: (f.write(b'half'), os._exit(9)))")
    r = subprocess.run([sys.executable, "-c", killed, str(ROOT), str(tmp_path / "a.txt")])
    assert r.returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".tmp-{socket.gethostname()}-")
    # ours and running (this process), and someone else's: both kept
    live = tmp_path / f".tmp-{socket.gethostname()}-{os.getpid()}.busy"
    live.write_bytes(b"")
    (tmp_path / ".tmp-not-ours").write_bytes(b"")
    files.atomic_write(tmp_path / "b.txt", write_bytes)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".tmp-not-ours", live.name,
                                                                 "b.txt"])


def test_atomic_write_syncs_the_file_before_the_rename_and_the_directory_after(tmp_path,
                                                                                monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def logged_replace(a, b):
        events.append("rename")
        replace(a, b)
    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    files.atomic_write(tmp_path / "a.txt", write_bytes)
    assert events == ["fsync file", "rename", "fsync dir"]


def test_token_lengths_write_goes_through_a_symlinked_config(tmp_path):
    real = tmp_path / "configs" / "sft.json"
    real.parent.mkdir()
    real.write_text('{"epochs": 3}\n')
    link = tmp_path / "cfg.json"
    link.symlink_to(real)
    data = tmp_path / "a.txt"
    data.write_text("hello world\nthe cat sat\n")
    assert token_lengths.main([str(data), "--tokenizer", "char", "--write", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text()) == {"epochs": 3, "max_length": 16}


def test_a_full_disk_is_one_error_naming_the_file_and_leaves_no_temp_file(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"old")

    def full(f):
        f.write(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(ValueError, match=r"cannot write .*ckpt\.pt: no space left.*free some"):
        files.atomic_write(tmp_path / "ckpt.pt", full)
    assert os.listdir(tmp_path) == ["ckpt.pt"] and (tmp_path / "ckpt.pt").read_bytes() == b"old"


def test_tokenizer_save_writes_its_two_files_as_one_unit(tmp_path, monkeypatch, capsys):
    first = bpe.train_bpe("low lower lowest", 260)
    second = bpe.train_bpe("newer newest news", 262)
    out = tmp_path / "tok"
    first.save(out)
    listing = (out / "vocab.txt").read_text()

    def killed(self):  # stopped after the model, before the listing
        raise KeyboardInterrupt
    monkeypatch.setattr(bpe.Tokenizer, "vocab_listing", killed)
    with pytest.raises(KeyboardInterrupt):
        second.save(out)
    monkeypatch.undo()
    assert bpe.Tokenizer.load(out).merges == first.merges  # the old pair, whole
    assert (out / "vocab.txt").read_text() == listing
    assert sorted(os.listdir(tmp_path)) == ["tok"]  # no temp folder left
    second.save(out)
    assert bpe.Tokenizer.load(out).merges == second.merges
    assert (out / "vocab.txt").read_text() == second.vocab_listing()
    # a directory with other files is refused, by the command before it trains
    (out / "notes.md").write_text("mine")
    text = tmp_path / "a.txt"
    text.write_text("low lower lowest")
    with pytest.raises(SystemExit):
        bpe.main(["train", "--input", str(text), "--vocab_size", "260", "--out", str(out)])
    assert "holds 'notes.md'" in capsys.readouterr().err
    assert (out / "notes.md").read_text() == "mine"


# ----------------------------------------------------------------------------- log.jsonl
def write_log(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_a_torn_last_log_line_is_dropped_and_said_once(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    write_log(log, [{"iter": i, "loss": 3.0 - i} for i in range(3)], tail='{"iter": 3, "lo')
    runtime.JsonlLogger(str(log), keep_before=10).log({"iter": 3, "loss": 0.5})
    assert [r["iter"] for r in runtime.read_log(log)] == [0, 1, 2, 3]
    runtime.plot_log(str(tmp_path))
    err = capsys.readouterr().err
    assert err.count("dropped a torn last line") == 1 and "log.jsonl:4" in err


def test_any_other_bad_log_line_names_its_file_and_line(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, [{"iter": 0, "loss": 3.0}], tail='{"iter": 1, "lo\n{"iter": 2, "loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"log\.jsonl:2: not valid JSON.*fix or delete that line"):
        runtime.JsonlLogger(str(log), keep_before=5)
    runtime.JsonlLogger(str(log), keep_before=0)  # a fresh run does not need the old log
    assert log.read_text() == ""


# ----------------------------------------------------------------------------- plots
def test_plot_prints_its_path_and_runtime_py_plot_redraws_it(tmp_path, capsys):
    write_log(tmp_path / "log.jsonl", [{"iter": 0, "loss": 3.0, "grad_norm": 1.0},
                                       {"iter": 5, "train_loss": 2.0, "val_loss": 2.5}])
    assert capsys.readouterr().out == ""
    path = runtime.plot_log(str(tmp_path))
    assert capsys.readouterr().out == f"wrote {path}\n"
    os.remove(path)
    r = subprocess.run([sys.executable, "runtime.py", "plot", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == f"wrote {path}\n" and os.path.getsize(path) > 0
    with pytest.raises(SystemExit, match=r"^error: .*nowhere has no log\.jsonl; give the out_dir"):
        runtime.main(["plot", str(tmp_path / "nowhere")])


def test_the_sft_plot_is_over_epochs_with_the_held_out_loss(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig),
                                                                  savefig(fig, *a, **k)))
    write_log(tmp_path / "log.jsonl", [  # as sft.py logs: steps, then a row that ends each epoch
        {"iter": 2, "loss": 3.0, "grad_norm": 1.0}, {"iter": 4, "loss": 2.5, "grad_norm": 1.0},
        {"iter": 4, "epoch": 1, "train_loss": 2.8, "val_loss": 2.9},
        {"iter": 6, "loss": 2.0, "grad_norm": 1.0},
        {"iter": 8, "epoch": 2, "train_loss": 2.1, "val_loss": 2.4}])
    runtime.plot_log(str(tmp_path))
    ax = drawn[0].axes[0]
    assert ax.get_xlabel() == "epoch"
    lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
    assert lines["held-out loss"] == [1, 2]
    assert [round(x, 2) for x in lines["training loss (steps)"]] == [0.5, 1.0, 1.5]


# ----------------------------------------------------------------------------- a closed pipe
def test_output_cut_by_a_closed_pipe_ends_quietly(tmp_path):
    chars = "".join(sorted(set(HELLASWAG.read_text()) - {"\n"}))
    config = GPTConfig(block_size=64, vocab_size=len(chars), n_layer=1, n_head=2, n_embd=16)
    checkpoints.save_checkpoint(str(tmp_path / "out" / "ckpt.pt"), {
        "model": GPT(config).state_dict(), "model_args": asdict(config),
        "tokenizer": {"kind": "char", "chars": chars}})
    bpe.train_bpe("low lower lowest", 260).save(tmp_path / "tok")
    text = tmp_path / "a.txt"
    text.write_text("low lower lowest\n" * 50)
    out, tok, cpu = str(tmp_path / "out"), str(tmp_path / "tok"), ["--device", "cpu"]
    # sft.py's --help is train.py's (configurator's), sample.py's main is wired as hellaswag.py's
    commands = [["sft.py", "--help"],
                ["sample.py", "--init_from", out, "--start", "A", "--max_new_tokens", "5", *cpu],
                ["token_lengths.py", str(text), "--tokenizer", "char"],
                ["bpe.py", "decode", "--model", tok, "--ids", "108,111,119"],
                ["wordpiece.py", "compare", "--vocab", str(ROOT / "tests" / "fixtures" /
                                                          "wordpiece_vocab.txt"), "--text", "hi"],
                ["configurator.py", str(ROOT / "config" / "train_shakespeare_char_cpu.py")]]
    running = []
    for command in commands:
        read, write = os.pipe()
        os.close(read)  # the reader (`head`) is gone before the first byte
        running.append(subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=write,
                                        stderr=subprocess.PIPE, text=True))
        os.close(write)
    for command, process in zip(commands, running):
        err = process.communicate(timeout=300)[1]  # progress bars aside, nothing
        assert not re.search("Traceback|BrokenPipe|Broken pipe|Exception ignored|error", err), \
            (command[0], err)
        assert process.returncode in (0, 1)


# ----------------------------------------------------------------------------- config files
def test_a_config_file_error_names_its_file_and_line(tmp_path):
    for name, source, message in [
            ("syntax.py", "batch_size = 4\nbetas = (0.8,\n", r"syntax\.py:2: '\(' was never"),
            ("name.py", "batch_size = 4\nlearning_rate = lr / 2\n",
             r"name\.py:2: NameError: name 'lr' is not defined; fix that line")]:
        (tmp_path / name).write_text(source)
        with pytest.raises(ValueError, match=message):
            apply_overrides(DEFAULTS, [str(tmp_path / name)], verbose=False)


def test_only_py_and_json_config_files_and_json_is_read(tmp_path):
    rows = tmp_path / "train.jsonl"
    rows.write_text('{"batch_size": 1}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl: a config file is a \.py or a \.json"):
        apply_overrides(DEFAULTS, [str(rows)], verbose=False)
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"batch_size": 8, "betas": [0.8, 0.9], "_note": "mine"}\n')
    c = apply_overrides(DEFAULTS, [str(cfg), "--out_dir=x"], verbose=False)
    assert c == {**DEFAULTS, "batch_size": 8, "betas": (0.8, 0.9), "out_dir": "x"}
    cfg.write_text('{"batch_size": "8"}')
    with pytest.raises(ValueError, match="cfg.json: config key 'batch_size' expects int, got str"):
        apply_overrides(DEFAULTS, [str(cfg)], verbose=False)
    cfg.write_text('{"batch_size": 8,\n}')
    with pytest.raises(ValueError, match=r"cfg\.json:2: not valid JSON"):
        apply_overrides(DEFAULTS, [str(cfg)], verbose=False)


def test_token_lengths_write_then_sft_reads_the_same_json(tmp_path):
    qa = tmp_path / "qa.txt"
    qa.write_text("<|question|>\nWhat is a stack?\n<|answer|>\nLast in, first out.\n")
    cfg = tmp_path / "sft.json"
    cfg.write_text('{"epochs": 2}\n')
    assert token_lengths.main([str(qa), "--sft", "--tokenizer", "char", "--write", str(cfg)]) == 0
    written = json.loads(cfg.read_text())  # the default keys: max_length and gen_length
    c = apply_overrides(sft.DEFAULT_CONFIG, [str(cfg)], verbose=False)
    assert (c["epochs"], c["max_length"], c["gen_length"]) == \
        (2, written["max_length"], written["gen_length"])


# ----------------------------------------------------------------------------- tokenizer files
def test_a_hand_edited_tokenizer_file_is_a_clear_error(tmp_path):
    text = bpe.train_bpe("low lower lowest", 260, ["<|endoftext|>"]).dumps()
    lines = text.split("\n")
    special = next(n for n, line in enumerate(lines, 1) if line.startswith("special "))
    merge = next(line for line in lines if line.startswith("merge "))
    for edited, message in [
            (text.replace('"<|endoftext|>"', '""'),
             f"line {special} .*a special token is a non-empty JSON string"),
            (text + merge + "\n", f"line {len(lines)} .*merge .* was already given at line"),
            (text + "token 70000 QQ==\n", f"line {len(lines)}: id 70000 is far beyond its 261")]:
        (tmp_path / "tokenizer.bpe").write_text(edited)
        with pytest.raises(ValueError, match=f"tokenizer.bpe is corrupt at {message}"):
            bpe.Tokenizer.load(tmp_path)


# ----------------------------------------------------------------------------- bad sampling input
@pytest.mark.parametrize("flag, message", [
    ("--temperature=nan", "temperature=nan must be >= 0"),
    ("--num_samples=-1", "--num_samples=-1 must be >= 1"),
    ("--max_new_tokens=-5", "--max_new_tokens=-5 >= 0"),
])
def test_bad_sampling_settings_are_one_line_errors(tmp_path, flag, message):
    config = GPTConfig(block_size=8, vocab_size=8, n_layer=1, n_head=1, n_embd=8)
    checkpoints.save_checkpoint(str(tmp_path / "ckpt.pt"), {
        "model": GPT(config).state_dict(), "model_args": asdict(config),
        "tokenizer": {"kind": "char", "chars": "abcdefgh"}})
    with pytest.raises(SystemExit, match=message):
        sample.main([f"--init_from={tmp_path}", "--start=ab", "--device=cpu", flag])


def test_a_nanogpt_checkpoint_resumes(tmp_path):
    """nanoGPT writes `_orig_mod.` keys (compiled), a positional optimizer state, no RNG states."""
    import importlib

    import train
    prepare = importlib.import_module("data.shakespeare_char.prepare")
    prepare.prepare("".join(chr(97 + i % 26) * 3 for i in range(4000)), str(tmp_path / "data"))
    config = dict(train.DEFAULT_CONFIG, dataset=str(tmp_path / "data"),
                  out_dir=str(tmp_path / "out"), device="cpu", n_layer=1, n_head=2, n_embd=16,
                  block_size=16, batch_size=4, gradient_accumulation_steps=1, max_iters=3,
                  lr_decay_iters=3, eval_interval=3, eval_iters=2, warmup_iters=1)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=1, n_head=2, n_embd=16, bias=False))
    optimizer = gpt.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")  # nanoGPT's two groups
    gpt(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    optimizer.step()
    checkpoints.save_checkpoint(str(tmp_path / "out" / "ckpt.pt"), {
        "model": {f"_orig_mod.{k}": v for k, v in gpt.state_dict().items()},
        "optimizer": optimizer.state_dict(), "model_args": asdict(gpt.config), "iter_num": 1,
        "best_val_loss": 9.0, "config": {}})
    losses = train.main(dict(config, init_from="resume"))
    assert losses is not None and losses["val"] < 9.0


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100, "truncated"])
@pytest.mark.parametrize("mmap", [False, True])  # resume reads the config with mmap: an OSError
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, content, mmap):
    path = tmp_path / "ckpt.pt"
    if content == "truncated":
        checkpoints.save_checkpoint(str(path), {"w": torch.ones(1000)})
        content = path.read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot be read .truncated, empty or not a torch"):
        checkpoints.load_checkpoint(str(path), mmap=mmap)


def run_cli(script, *args):
    """A command's main() as `python script args` ends -> (exit status, stderr): SystemExit("error: ...")
    prints its text and exits 1, as the interpreter does."""
    main = {"sample.py": sample.main, "token_lengths.py": token_lengths.main, "bpe.py": bpe.main,
            "model.py": model.main, "sft.py": sft.main}[script]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(list(args)) or 0
        except SystemExit as e:
            status = 1 if isinstance(e.code, str) else e.code
            print(e.code if isinstance(e.code, str) else "", file=sys.stderr)
    return status, err.getvalue()


@pytest.mark.parametrize("argv, message", [
    (["sample.py", "--device=foo"], "error: device='foo' is not available here"),  # was a traceback
    (["sample.py", "--template=xyz"], "error: argument --template: invalid choice: 'xyz'"),
    (["token_lengths.py", "README.md", "--batch_size", "99999999999999999999999"],
     "error: argument --batch_size: 99999999999999999999999 is beyond a 64-bit integer"),
    (["token_lengths.py", "README.md", "--eot", "-1"], "--eot=-1: the first two must be >= 1, --eot >= 0"),
    (["bpe.py", "decode", "--model", "gpt2", "--ids", "1", "--bogus"], "error: unrecognized arguments: --bogus"),
    (["model.py", "export", "--from", "nowhere"], "error: the following arguments are required: --to"),
    (["sft.py", "--gen_length=-1"], "error: gen_length=-1 must be >= 0"),  # these five were accepted
    (["sft.py", "--learning_rate=-1.0"], "error: learning_rate=-1.0 must be >= 0"),
    (["sft.py", "--warmup_iters=-1"], "error: warmup_iters=-1 must be >= 0"),
    (["sft.py", "--save_interval=-1"], "error: save_interval=-1 must be >= 0"),
    (["sft.py", "--eval_train=-1"], "error: eval_train=-1 must be >= 0"),
])
def test_every_cli_says_a_bad_argument_in_one_error_line(argv, message):
    """argparse's usage block and status 2, tracebacks and silent acceptance become one line, status 1."""
    status, err = run_cli(*argv)
    assert status == 1 and err.strip().splitlines()[-1].startswith("error:") and "Traceback" not in err
    assert message in err


@pytest.mark.parametrize("script", ["data/tinystories/prepare.py", "data/shakespeare/prepare.py"])
def test_the_prepare_scripts_say_a_bad_argument_in_one_error_line(script):
    # they parsed with plain argparse: a usage block and status 2
    r = subprocess.run([sys.executable, script, "--num_proc", "x"], cwd=ROOT, capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, "error: argument --num_proc: invalid int64 value: 'x'\n")


def test_export_onto_a_file_is_one_error_line(tmp_path):
    config = GPTConfig(block_size=8, vocab_size=8, n_layer=1, n_head=1, n_embd=8)
    checkpoints.save_checkpoint(str(tmp_path / "run" / "ckpt.pt"), {
        "model": GPT(config).state_dict(), "model_args": asdict(config),
        "tokenizer": {"kind": "char", "chars": "abcdefgh"}})
    (tmp_path / "a_file").write_text("not a directory")
    status, err = run_cli("model.py", "export", "--from", str(tmp_path / "run"), "--to", str(tmp_path / "a_file"))
    assert status == 1 and err.startswith("error: ") and "Traceback" not in err  # was FileExistsError


def test_a_bpe_that_runs_out_of_pairs_says_so(capsys):
    tok = bpe.train_bpe("abab abab", 1000, ["<|endoftext|>"])
    err = capsys.readouterr().err
    assert f"the vocabulary has {len(tok.vocab)} tokens, not the 1000 asked for" in err
    bpe.train_bpe("abab abab", 258, ["<|endoftext|>"])  # enough pairs for 1 merge: nothing said
    assert capsys.readouterr().err == ""
