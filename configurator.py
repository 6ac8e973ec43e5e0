"""Command-line configuration, nanoGPT style, made strict.

    python train.py config/train_shakespeare_char.py --batch_size=32 --compile=False

Arguments are applied left to right over the defaults (train.py's DEFAULT_CONFIG, or sft.py's own):
- a bare argument is a Python config file, run with the config so far as its globals (so it can say
  `lr_decay_iters = max_iters`); its top-level assignments override the defaults (names starting
  with `_` are the file's own helpers and are ignored);
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
import ast
import difflib
import os
import sys
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
                      "[CONFIG_FILE.py ...] [--key=value ...]\n\n"
                      "options, with their default values:")
                for key, value in defaults.items():
                    print(f"  --{key}={value!r}")
            raise SystemExit(0)
        if arg == "--print_config":  # the checked result of everything before it, then stop
            with quiet_broken_pipe():
                print("\n".join(f"{key} = {value!r}" for key, value in config.items()))
            raise SystemExit(0)
        if not arg.startswith("--"):  # a config file
            if not os.path.isfile(arg):
                raise FileNotFoundError(f"config file {arg!r} not found "
                                        "(arguments are config files or --key=value)")
            with open(arg) as f:
                source = f.read()
            # the file may read the values so far, e.g. lr_decay_iters = max_iters
            scope = dict(config)
            exec(compile(source, arg, "exec"), scope)  # a config file is plain Python
            if verbose:
                print(f"Overriding config with {arg}")
            for key, value in scope.items():
                # assigned here
                if not key.startswith("_") and not (key in config and value is config[key]):
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
        # exact type: True is not accepted for an int, 1 not for a bool
        elif type(value) is not expected:
            raise ValueError(f"{where}config key {key!r} expects {expected.__name__}, "
                             f"got {type(value).__name__} {value!r}")
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
            with open(arg) as f:
                exec(compile(f.read(), arg, "exec"), scope)  # a config file is plain Python
    for key, value in scope.items():
        if not key.startswith("_"):
            print(f"{key} = {value!r}")


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
    except (OSError, SyntaxError, NameError, ValueError) as e:
        raise SystemExit(f"error: {e}")
