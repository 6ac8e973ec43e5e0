"""Command-line configuration, nanoGPT style, made strict.

    python train.py config/train_shakespeare_char.py --batch_size=32 --compile=False

Arguments are applied left to right over the defaults (train.py's DEFAULT_CONFIG, or sft.py's own):
- a bare argument is a config file. A .py file is run with the config so far as its globals (so it
  can say `lr_decay_iters = max_iters`); its top-level assignments override the defaults (names
  starting with `_` are the file's own helpers and are ignored). A .json file is one object of
  key: value (what `token_lengths.py --write` updates), checked like any override. Any other file
  is refused, never run, and an error in a config file names its file and line;
- `--key=value` overrides one key; the value is a Python literal (`32`, `3e-4`, `False`, `'a b'`,
  `None`), or, if it does not parse as one, the bare word as a string (`--device=cpu`). Everything
  after the first `=` is the value, so values may contain `=`.

Every key must already exist in the defaults, with the same type: a typo or `--batch_size=big` is
an error naming the key and the expected type, not a silently ignored setting. An int is accepted
where the default is a float, a None default accepts anything, and a str default takes the text as
written (`--dataset=123`).

    # the checked config
    python train.py config/train_shakespeare_char_cpu.py --max_iters=10 --print_config
    # only what the file itself sets
    python configurator.py config/train_shakespeare_char_cpu.py
"""
import argparse
import ast
import difflib
import json
import math
import os
import sys
import traceback
from contextlib import contextmanager


def apply_overrides(defaults, argv, verbose=None):
    """Return a copy of `defaults` updated by the config files and --key=value arguments in `argv`.

    verbose: print each override; by default only on rank 0 (RANK unset or "0"),
    so torchrun prints once."""
    if verbose is None:
        verbose = os.environ.get("RANK", "0") == "0"
    config = dict(defaults)
    for arg in argv:
        # the options are the defaults' keys: list them with their defaults
        if arg in ("-h", "--help"):
            with quiet_broken_pipe():
                print(f"usage: python {os.path.basename(sys.argv[0])} "
                      "[CONFIG_FILE.py|.json ...] [--key=value ...]\n\n"
                      "options, with their default values:")
                for key, value in defaults.items():
                    print(f"  --{key}={value!r}")
            raise SystemExit(0)
        if arg == "--print_config":  # the checked result of everything before it, then stop
            with quiet_broken_pipe():
                print("\n".join(f"{key} = {value!r}" for key, value in config.items()))
            raise SystemExit(0)
        if not arg.startswith("--"):  # a config file
            settings = read_config_file(arg, config)
            if verbose:
                print(f"Overriding config with {arg}")
            for key, value in settings.items():
                _set(config, defaults, key, value, f"{arg}: ", verbose)
        else:
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise ValueError(f"argument {arg!r} needs a value: write --{key}=VALUE")
            value = _literal(text)
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                value = text  # a str option takes the text as written, e.g. --out_dir=2024
            _set(config, defaults, key, value, "", verbose)
    return config


def read_config_file(path, settings):
    """{key: value} of what a config file sets: a .py file's top-level assignments, or a .json
    file's object (token_lengths.py --write writes one). Keys starting with _ are the file's own.

    A .py file runs with `settings` (the config so far) as its globals, so it can say
    lr_decay_iters = max_iters. Any other kind of file, or one that does not run or parse, is an
    error naming the file and line: a data file given where a config goes must not run."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found "
                                "(arguments are config files or --key=value)")
    kind = os.path.splitext(path)[1]
    if kind not in (".py", ".json"):
        raise ValueError(f"{path}: a config file is a .py or a .json file, not "
                         f"{kind or 'one without an extension'}; data files go in options "
                         "(e.g. --train_file=...)")
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text, so not a config file") from None
    values = _run_config(source, path, settings) if kind == ".py" else _json_config(source, path)
    return {key: value for key, value in values.items() if not key.startswith("_")}


def _run_config(source, path, settings):
    """{name: value} that the Python config file assigns (or changes), run over settings."""
    scope = dict(settings)
    try:
        exec(compile(source, path, "exec"), scope)  # a config file is plain Python
    except SyntaxError as e:
        raise ValueError(f"{path}:{e.lineno}: {e.msg}; a config file is Python: fix that line") \
            from None
    except Exception as e:  # NameError and the like: the line is the file's deepest frame
        lines = [f":{frame.lineno}" for frame in traceback.extract_tb(e.__traceback__)
                 if frame.filename == path] or [""]  # none: compile() refused it
        raise ValueError(f"{path}{lines[-1]}: {type(e).__name__}: {e}; fix that line (a config "
                         "file sees the settings before it and Python's builtins)") from None
    return {key: value for key, value in scope.items()
            if not (key in settings and value is settings[key])}


def _json_config(source, path):
    """{key: value} of a JSON config file: one object."""
    try:
        values = json.loads(source)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix that line") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: holds a JSON {type(values).__name__}; a JSON config file is "
                         "one object of key: value")
    return values


def _literal(text):
    """A Python literal (`32`, `3e-4`, `False`, `'a b'`), or the text itself when it is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):  # not a literal: a bare word, taken as a string
        return text


def _set(config, defaults, key, value, where, verbose):
    """Check key and type against the defaults, then set config[key]."""
    if key not in defaults:
        close = difflib.get_close_matches(key, list(defaults), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}unknown config key {key!r}{hint}")
    default = defaults[key]
    if default is not None:
        expected = type(default)
        if expected is float and type(value) is int:
            value = float(value)
        elif expected is tuple and type(value) is list:  # JSON has lists, not tuples
            value = tuple(value)
        # exact type: True is not accepted for an int, 1 not for a bool
        elif type(value) is not expected:
            raise ValueError(f"{where}config key {key!r} expects {expected.__name__}, "
                             f"got {type(value).__name__} {value!r}")
    # numbers every script can hold: int64 (tensors, numpy, range) and finite floats
    if type(value) is int and value not in INT64:
        raise ValueError(f"{where}config key {key!r}: {value} is beyond a 64-bit integer")
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"{where}config key {key!r}: {value} is not a finite number")
    if verbose and config[key] != value:
        print(f"  {key} = {value!r}")
    config[key] = value


def main(argv):
    """Print the settings that config files and --key=value arguments make, before any script
    checks them against its defaults (`python train.py ... --print_config` shows the whole
    checked config)."""
    scope = {}
    for arg in argv:
        if arg.startswith("--"):
            key, _, text = arg[2:].partition("=")
            scope[key] = _literal(text)
        else:
            scope.update(read_config_file(arg, scope))
    for key, value in scope.items():
        print(f"{key} = {value!r}")


# ----------------------------------------------------------------------------- command lines
INT64 = range(-2**63, 2**63)  # what a 64-bit integer holds (`in` a range is O(1) for an int)


def int64(text):
    """int(text) when a 64-bit integer holds it -> int; else argparse's type error."""
    value = int(text)
    if value not in INT64:
        raise argparse.ArgumentTypeError(f"{text} is beyond a 64-bit integer")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse for every command of ours: a usage error is one `error: ...` line with exit status
    1, as any other error of theirs (argparse's own is a usage block and status 2), and an int
    option holds only what a 64-bit integer can (numpy and torch cannot take more)."""

    def error(self, message):
        raise SystemExit(f"error: {message}")

    def add_argument(self, *args, **kwargs):
        if kwargs.get("type") is int:
            kwargs["type"] = int64
        return super().add_argument(*args, **kwargs)


# ---------------------------------------------------------------------- output cut by a closed pipe
@contextmanager
def quiet_broken_pipe():
    """Nothing; a command's output cut short by a closed pipe (`python sft.py --help | head`)
    ends it quietly, with status 1, instead of with a BrokenPipeError traceback. The scripts'
    main() run inside it; so does --help above (train.py's and sft.py's)."""
    try:
        try:
            yield
        finally:  # output still in the buffer breaks here, not in the interpreter's exit
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader is gone: stdout to /dev/null, so that the exit's own flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


if __name__ == "__main__":
    try:
        with quiet_broken_pipe():
            main(sys.argv[1:])
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
