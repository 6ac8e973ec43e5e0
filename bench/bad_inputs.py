"""The bad-input survey: every CLI fed bad values, files and settings, each outcome classified.

    python bench/bad_inputs.py  # a table per case, then tried / clear / traceback / accepted

A case is clear when the command exits non-zero and its last stderr line starts with "error:" (one
line, no traceback); a traceback, or an exit status of 0 or a run still going after 120 s (the bad
input silently accepted), is a defect. Runs in a temp directory: a tiny character dataset and a
3-iteration checkpoint are made first, so the cases reach the code they aim at.
"""
import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
HUGE = "99999999999999999999999"  # beyond int64


def cases(t):
    """(name, argv after python) for each bad input; t: the temp dir with the fixtures."""
    train = ["train.py", "--dataset=" + str(t / "data"), "--device=cpu", "--max_iters=2",
             "--eval_iters=1", "--n_layer=1", "--n_head=1", "--n_embd=8", "--block_size=8",
             "--batch_size=2", "--out_dir=" + str(t / "fresh")]
    resume = train[:-1] + ["--out_dir=" + str(t / "run"), "--init_from=resume"]
    sft = ["sft.py", "--device=cpu", "--out_dir=" + str(t / "sft"), "--n_layer=1", "--n_head=1",
           "--n_embd=8", "--epochs=1", "--show_example=0"]
    sample = ["sample.py", "--out_dir=" + str(t / "run"), "--device=cpu", "--max_new_tokens=3"]
    tl = ["token_lengths.py", "data/sft/train.txt", "--tokenizer", "char"]
    hs = ["hellaswag.py", "--model", str(t / "run"), "--device", "cpu", "--data",
          "tests/fixtures/hellaswag_val_sample.jsonl"]
    bad_tok = t / "badtok"
    return [
        # train.py: values
        *[(f"train {a}", train + [a]) for a in (
            "--device=foo", "--device=cuda", "--device=mps", "--weight_decay=-1", "--grad_clip=-1",
            "--warmup_iters=-5", "--min_lr=1.0", "--learning_rate=nan", "--batch_size=0",
            "--block_size=-1", f"--max_iters={HUGE}", f"--batch_size={HUGE}", "--max_iters=abc",
            "--dtype=float8", "--compile=maybe", "--gradient_accumulation_steps=0",
            "--dropout=1.5", "--beta1=2", "--eval_interval=0", "--log_interval=-1",
            "--no_such_key=1", "--dataset=" + str(t / "nowhere"), "--out_dir=" + str(t / "a_file"),
            "--ddp_timeout=0", "--seed=-1")],
        # train.py: files
        *[(f"train config {name}", train[:1] + [str(t / name)] + train[1:]) for name in (
            "syntax.py", "name_error.py", "rows.jsonl", "notes.txt", "list.json", "missing.py")],
        ("train dataset with garbage meta.json", train[:1] + ["--dataset=" + str(t / "garbage")]
         + train[2:]),
        *[(f"resume {name}", resume[:-2] + ["--out_dir=" + str(t / name), "--init_from=resume"])
          for name in ("truncated", "empty", "random", "nowhere")],
        ("resume with a new shape", resume + ["--n_layer=3"]),
        # sample.py
        *[(f"sample {a}", sample + [a]) for a in (
            "--temperature=nan", "--temperature=-1", "--num_samples=-1", "--num_samples=0",
            "--max_new_tokens=-5", f"--max_new_tokens={HUGE}", "--top_k=-3", "--top_p=2",
            "--top_p=nan", "--start=FILE:" + str(t / "missing.txt"), "--device=foo",
            "--init_from=" + str(t / "nowhere"), "--init_from=" + str(t / "hf_list"),
            "--init_from=" + str(t / "hf_random"), "--seed=" + HUGE, "--template=xyz")],
        # sft.py
        *[(f"sft {a}", sft + [a]) for a in (
            "--epochs=0", "--batch_size=-1", "--val_fraction=2", "--template=xyz",
            "--train_file=" + str(t / "missing.txt"), "--train_file=" + str(t / "random.bin"),
            "--max_length=-3", "--gen_length=-1", "--lora_rank=-1", "--fsdp=True",
            "--tokenizer=bpe:big", "--init_from=" + str(t / "nowhere"), "--learning_rate=-1",
            "--warmup_iters=-1", "--save_interval=-1", "--eval_train=-1", "--show_example=99999",
            str(t / "rows.jsonl"))],
        # bpe.py
        *[(f"bpe {' '.join(a)}", ["bpe.py", *a]) for a in (
            ("train", "--input", "tests/fixtures/bpe_sample.txt", "--vocab_size", "10", "--out",
             str(t / "tok")),
            ("train", "--input", "tests/fixtures/bpe_sample.txt", "--vocab_size", "abc", "--out",
             str(t / "tok")),
            ("train", "--input", str(t / "missing.txt"), "--vocab_size", "300", "--out",
             str(t / "tok")),
            ("encode", "--model", str(t / "nowhere"), "--text", "hi"),
            ("decode", "--model", "gpt2", "--ids", "1,x"),
            ("decode", "--model", "gpt2", "--ids", "99999999"),
            ("decode", "--model", "gpt2", "--ids", "-1"),
            ("decode", "--model", "gpt2", "--ids", HUGE),
            ("encode", "--model", "gpt2", "--file", str(t / "random.bin")),
            *[("encode", "--model", str(bad_tok / name), "--text", "hello there")
              for name in ("empty_special.bpe", "repeated_merge.bpe", "far_id.bpe")])],
        # wordpiece.py
        *[(f"wordpiece {' '.join(a)}", ["wordpiece.py", *a]) for a in (
            ("train", "--input", "tests/fixtures/bpe_sample.txt", "--vocab_size", "0", "--output",
             str(t / "v.txt")),
            ("compare", "--vocab", str(t / "missing.txt"), "--text", "hi"),
            ("compare", "--vocab", str(t / "no_unk.txt"), "--text", "hi"))],
        # token_lengths.py
        *[(f"token_lengths {' '.join(a)}", tl + list(a)) for a in (
            ("--coverage", "2"), ("--multiple_of", "0"), ("--num_proc", "0"), ("--eot", "-1"),
            ("--write", str(t)), ("--tokenizer", str(t / "nowhere")), ("--batch_size", HUGE))],
        ("token_lengths missing file", ["token_lengths.py", str(t / "missing.txt")]),
        # hellaswag.py
        *[(f"hellaswag {' '.join(a)}", hs + list(a)) for a in (
            ("--batch_size", "0"), ("--limit", "-1"), ("--data", str(t / "rows.jsonl")),
            ("--data", str(t / "missing.jsonl")), ("--model", str(t / "nowhere")))],
        # model.py
        *[(f"model {' '.join(a)}", ["model.py", *a]) for a in (
            ("download", "foo"), ("export", "--from", str(t / "nowhere"), "--to", str(t / "x")),
            ("export", "--from", str(t / "run"), "--to", str(t / "a_file")),
            ("generate", "--model", str(t / "hf_random"), "--prompt", "hi"))],
        ("prepare missing input", ["data/shakespeare_char/prepare.py", "--input",
                                   str(t / "missing.txt")]),
    ]


def must_work(t):
    """(name, argv, a test of stdout) for odd inputs that are not errors: they must work."""
    train = ["train.py", "--dataset=" + str(t / "data"), "--device=cpu", "--max_iters=4",
             "--eval_iters=1", "--eval_interval=4", "--out_dir=" + str(t / "nanogpt"),
             "--init_from=resume", "--n_layer=1", "--n_head=1", "--n_embd=8", "--block_size=8",
             "--batch_size=2"]
    text = "hello there,  world"
    return [("resume a nanoGPT checkpoint (no rng key)", train,
             lambda out: "saved checkpoint" in out),
            ("a hand-edited split pattern that matches letters only: nothing dropped",
             ["bpe.py", "encode", "--model", str(t / "badtok" / "drops_text.bpe"), "--text", text],
             lambda out: "".join(ast.literal_eval(out.splitlines()[1])) == text)]


def make_fixtures(t):
    """The files the cases point at: data, a small run, broken configs, checkpoints, tokenizers."""
    data = t / "data"
    data.mkdir()
    (np.arange(2000) % 65).astype(np.uint16).tofile(data / "train.bin")
    (np.arange(500) % 65).astype(np.uint16).tofile(data / "val.bin")
    chars = "".join(chr(32 + i) for i in range(65))
    (data / "meta.json").write_text(json.dumps({"vocab_size": 65, "tokenizer": {
        "kind": "char", "chars": chars}}))
    (t / "garbage").mkdir()
    for f in ("train.bin", "val.bin"):
        (t / "garbage" / f).write_bytes((data / f).read_bytes())
    (t / "garbage" / "meta.json").write_text("{not json")
    subprocess.run([sys.executable, "train.py", f"--dataset={data}", "--device=cpu",
                    "--max_iters=3", "--eval_iters=1", "--eval_interval=3", "--n_layer=1",
                    "--n_head=1", "--n_embd=8", "--block_size=8", "--batch_size=2",
                    f"--out_dir={t / 'run'}"], cwd=ROOT, check=True, capture_output=True)
    good = (t / "run" / "ckpt.pt").read_bytes()
    for name, blob in (("truncated", good[: len(good) // 2]), ("empty", b""),
                       ("random", os.urandom(4096))):
        (t / name).mkdir()
        (t / name / "ckpt.pt").write_bytes(blob)
    (t / "nanogpt").mkdir()  # nanoGPT's keys: model, optimizer, model_args, iter_num, config
    ckpt = torch.load(t / "run" / "ckpt.pt", weights_only=True)
    torch.save({k: ckpt[k] for k in ("model", "optimizer", "model_args", "iter_num",
                                     "best_val_loss", "config")}, t / "nanogpt" / "ckpt.pt")
    (t / "syntax.py").write_text("batch_size = = 3\n")
    (t / "name_error.py").write_text("max_iters = undefined_name * 2\n")
    (t / "rows.jsonl").write_text('{"question": "q"}\n')
    (t / "notes.txt").write_text("batch_size = 3\n")
    (t / "list.json").write_text("[1, 2]")
    (t / "a_file").write_text("not a directory")
    (t / "random.bin").write_bytes(os.urandom(2048))
    (t / "hf_list").mkdir()
    (t / "hf_list" / "config.json").write_text("[1, 2]")
    (t / "hf_random").mkdir()
    (t / "hf_random" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (t / "hf_random" / "model.safetensors").write_bytes(os.urandom(4096))
    (t / "no_unk.txt").write_text("[PAD]\nhi\n")
    make_bad_tokenizers(t / "badtok")


def make_bad_tokenizers(folder):
    """Hand-edited tokenizer files: an empty special token, a repeated merge, an id far beyond the
    vocab, a split pattern that drops text."""
    folder.mkdir()
    good = (ROOT / "tests/fixtures/bpe_v1.bpe").read_text(encoding="utf-8").splitlines()
    merge = next(line for line in good if line.startswith("merge "))
    edits = {"empty_special.bpe": [line.replace('"<|endoftext|>"', '""') for line in good],
             "repeated_merge.bpe": good + [merge],
             "far_id.bpe": good + ["token 70000 QQ=="],
             "drops_text.bpe": [good[0], 'pattern "[a-z]+"', *good[2:]]}  # spaces fall out
    for name, lines in edits.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def classify(done):
    """-> "clear" | "traceback" | "accepted": how a bad input's command ended."""
    err = done.stderr.strip().splitlines()
    if done.returncode == 0:
        return "accepted"
    if "Traceback" in done.stderr or not err or not err[-1].startswith("error:"):
        return "traceback"
    return "clear"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        make_fixtures(t)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        counts = {"clear": 0, "traceback": 0, "accepted": 0}
        for name, argv in cases(t):
            try:
                done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:  # it took the bad value and ran on
                done = subprocess.CompletedProcess(argv, 0, "", "(still running after 120 s)")
            kind = classify(done)
            counts[kind] += 1
            last = (done.stderr.strip().splitlines() or [""])[-1][:110]
            print(f"{kind:<9} {name[:60]:<60} {last}", flush=True)
        print(f"\ntried {sum(counts.values())}: clear {counts['clear']}, traceback "
              f"{counts['traceback']}, silently accepted {counts['accepted']}")
        for name, argv, want in must_work(t):
            done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)
            ok = done.returncode == 0 and want(done.stdout)
            print(f"{'works' if ok else 'FAILS':<9} {name}")


if __name__ == "__main__":
    main()
