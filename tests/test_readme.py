"""The README's commands run, in the README's order, in a fresh copy of the project.

Every shell command of README.md is run from a copy of the tracked sources (no out_dirs, no token
files) in order, so a command that needs an out_dir, a file or a flag that no earlier command gives
fails here. Long runs are shortened by appending overrides (SHORTER); a few need a GPU, the
network or many minutes (NOT_RUN, each with its reason): for those the script and config files must
exist, and train.py/sft.py must accept the command's config and flags (--print_config).
"""
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

# command prefix -> overrides appended (a later --key=value wins): the same path, fewer steps;
# the first prefix that matches counts
SHORTER = {
    "OMP_NUM_THREADS=1 python train.py config/train_shakespeare_char_cpu.py":
        "--max_iters=20 --lr_decay_iters=20 --eval_interval=10 --eval_iters=2",
    "python train.py config/train_shakespeare_char_cpu.py":
        "--max_iters=30 --lr_decay_iters=30 --eval_interval=10 --eval_iters=2",
    "python sft.py config/sft_demo_cpu.py --out_dir=out-sft-resume --init_from=resume": "--epochs=2",
    "python sft.py config/sft_demo_cpu.py": "--epochs=1 --eval_train=2 --eval_heldout=1",
    "python hellaswag.py --model smollm2-135m-instruct": "--limit 1",
}
# command prefix -> why it is not run here (its files and flags are still checked)
NOT_RUN = {
    "pip install": "the set-up command: CI runs it",
    "python -m pytest": "the test suite itself",
    "python train.py config/train_shakespeare_char.py": "GPU settings: hours on a CPU",
    "torchrun": "several processes or GPUs (tests/test_train.py runs DDP and FSDP on 2 processes)",
    "python train.py config/finetune_shakespeare.py": "GPT-2's weights from the Hugging Face hub",
    "python sft.py config/sft_smollm2_cpu.py": "a 134.5M-parameter fine-tune: minutes on 2 cores",
    "python sample.py --init_from=gpt2": "GPT-2's weights from the Hugging Face hub",
    "python hellaswag.py --download": "the network",
    "python hellaswag.py --model gpt2": "GPT-2's weights from the Hugging Face hub",
    "python hellaswag.py --model out-tinystories": "a TinyStories run on a GPU",
    "python sample.py --init_from=smollm2-135m-instruct": "tests/test_chat.py runs this command",
}


def readme_commands(text):
    """The shell commands of README.md's sh blocks, in order -> a list of str: lines after "$ ",
    or every line of a block without prompts, joined over trailing backslashes and over quotes
    that span lines; comments cut."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines = block.replace("\\\n", " ").splitlines()
        prompted = any(line.startswith("$ ") for line in lines)
        command = None
        for line in lines:
            line = re.sub(r"\s+# .*$", "", line)  # a comment
            if command is not None and not closed(command):  # a quoted string goes on
                command += "\n" + line
            elif not prompted or line.startswith("$ "):
                command = line[2:] if prompted else line
            else:
                continue  # output
            if closed(command) and command.strip():
                commands.append(command.strip())
    return commands


def closed(command):
    """Whether command's quotes are all closed (a quoted string may span README lines)."""
    try:
        shlex.split(command)
        return True
    except ValueError:
        return False


def match(table, command):
    return next((v for k, v in table.items() if command.startswith(k)), None)


def check_not_run(command, cwd, env):
    """A command NOT_RUN still names scripts and config files that exist, and train.py / sft.py
    accept its config and flags."""
    words = shlex.split(command.replace("$(", "("))
    for word in words:
        if word.endswith(".py") or word.startswith("config/"):
            assert (cwd / word).is_file(), f"{command!r}: {word} does not exist"
    script = next((w for w in words if w in ("train.py", "sft.py")), None)
    if script:
        args = words[words.index(script) + 1:]
        subprocess.run([sys.executable, script, *args, "--print_config"], cwd=cwd, env=env,
                       check=True, capture_output=True, timeout=60)


def fresh_copy(dest):
    """The project's sources as a fresh clone has them: no out_dirs, token files or caches."""
    skip = shutil.ignore_patterns(".git", "out-*", "__pycache__", ".pytest_cache", "*.bin",
                                  "meta.json", "meta.pkl", "hellaswag_val.jsonl")
    shutil.copytree(ROOT, dest, ignore=skip)
    # the corpus prepare.py downloads when online: a few pages of it made here
    play = (ROOT / "tests/fixtures/bpe_sample.txt").read_text(encoding="utf-8")
    play += string.ascii_letters + string.digits + string.punctuation + "\n"  # every character
    (dest / "tinyshakespeare.txt").write_text(play * max(1, 200_000 // len(play)), encoding="utf-8")


def test_readme_commands_run_in_order_in_a_fresh_copy(tmp_path):
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) > 30 and commands[0].startswith("pip install")
    cwd = tmp_path / "scratchgpt"
    fresh_copy(cwd)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    for command in commands:
        if match(NOT_RUN, command):
            check_not_run(command, cwd, env)
            continue
        extra = match(SHORTER, command)
        full = f"{command} {extra}" if extra else command
        done = subprocess.run(full.replace("python ", f"{sys.executable} ", 1), shell=True,
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                              executable="/bin/bash")
        assert done.returncode == 0, f"README command failed: {full}\n{done.stderr[-2000:]}"
