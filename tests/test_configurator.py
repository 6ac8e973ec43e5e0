"""configurator.py: config files and --key=value overrides, checked against the defaults' keys and types."""
import pytest

from configurator import apply_overrides

DEFAULTS = {"batch_size": 12, "learning_rate": 6e-4, "device": None, "out_dir": "out", "compile": False,
            "betas": (0.9, 0.95)}


def test_overrides_parse_python_literals_and_bare_words():
    c = apply_overrides(DEFAULTS, ["--batch_size=32", "--learning_rate=3e-4", "--compile=True", "--device=cpu",
                                   "--betas=(0.8, 0.9)"], verbose=False)
    assert c == {"batch_size": 32, "learning_rate": 3e-4, "device": "cpu", "out_dir": "out", "compile": True,
                 "betas": (0.8, 0.9)}
    assert DEFAULTS["batch_size"] == 12  # the defaults are not modified


def test_int_for_float_none_accepts_anything_and_values_with_equals():
    c = apply_overrides(DEFAULTS, ["--learning_rate=1", "--device=None", "--out_dir=runs/a=b"], verbose=False)
    assert c["learning_rate"] == 1.0 and type(c["learning_rate"]) is float
    assert c["device"] is None
    assert c["out_dir"] == "runs/a=b"
    assert apply_overrides(DEFAULTS, ["--device=[1, 2]"], verbose=False)["device"] == [1, 2]
    # a str option takes the text as written, even when it looks like a number
    assert apply_overrides(DEFAULTS, ["--out_dir=2024"], verbose=False)["out_dir"] == "2024"


@pytest.mark.parametrize("arg, words", [
    ("--batch_size=big", ["batch_size", "expects int", "str"]),
    ("--batch_size=3.5", ["batch_size", "expects int", "float"]),
    ("--batch_size=True", ["batch_size", "expects int", "bool"]),  # bool is an int subclass: still refused
    ("--compile=1", ["compile", "expects bool", "int"]),
    ("--learning_rate=fast", ["learning_rate", "expects float"]),
    ("--batch_sise=3", ["unknown config key 'batch_sise'", "did you mean 'batch_size'"]),
    ("--batch_size", ["needs a value", "--batch_size=VALUE"]),
    ("--batch_size=99999999999999999999999", ["batch_size", "beyond a 64-bit integer"]),  # ran forever
    ("--learning_rate=1e999", ["learning_rate", "inf is not a finite number"]),
])
def test_bad_overrides_name_the_key_and_the_type(arg, words):
    with pytest.raises(ValueError) as e:
        apply_overrides(DEFAULTS, [arg], verbose=False)
    for w in words:
        assert w in str(e.value)


def test_config_file_then_overrides_left_to_right(tmp_path):
    cfg = tmp_path / "x.py"
    cfg.write_text("batch_size = 4 * 8\n_helper = 3  # private names are the file's own\nout_dir = 'out-x'\n")
    c = apply_overrides(DEFAULTS, [str(cfg), "--batch_size=7"], verbose=False)
    assert c["batch_size"] == 7 and c["out_dir"] == "out-x"
    assert apply_overrides(DEFAULTS, ["--batch_size=7", str(cfg)], verbose=False)["batch_size"] == 32
    derived = tmp_path / "derived.py"  # a config file sees the values so far
    derived.write_text("out_dir = out_dir + '-' + str(batch_size)\n")
    assert apply_overrides(DEFAULTS, ["--batch_size=7", str(derived)], verbose=False)["out_dir"] == "out-7"


def test_config_file_errors(tmp_path):
    bad_key = tmp_path / "typo.py"
    bad_key.write_text("learning_rat = 1e-3\n")
    with pytest.raises(ValueError, match=r"typo.py: unknown config key 'learning_rat' \(did you mean"):
        apply_overrides(DEFAULTS, [str(bad_key)], verbose=False)
    bad_type = tmp_path / "type.py"
    bad_type.write_text("batch_size = '12'\n")
    with pytest.raises(ValueError, match="type.py: config key 'batch_size' expects int, got str"):
        apply_overrides(DEFAULTS, [str(bad_type)], verbose=False)
    with pytest.raises(FileNotFoundError, match="nope.py"):
        apply_overrides(DEFAULTS, [str(tmp_path / "nope.py")], verbose=False)


def test_overrides_printed_once_on_rank_zero_only(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    apply_overrides(DEFAULTS, ["--batch_size=5", "--out_dir=out"])  # out_dir unchanged: not printed
    assert capsys.readouterr().out == "  batch_size = 5\n"
    monkeypatch.setenv("RANK", "1")
    apply_overrides(DEFAULTS, ["--batch_size=5"])
    assert capsys.readouterr().out == ""


def test_train_defaults_are_the_shipped_configs_keys():
    """Every shipped config file applies cleanly over train.py's DEFAULT_CONFIG (no typos, right types)."""
    import glob
    import os

    import train
    configs = sorted(glob.glob(os.path.join(train.HERE, "config", "train_*.py")) +
                     glob.glob(os.path.join(train.HERE, "config", "finetune_*.py")))
    assert len(configs) >= 4
    for path in configs:
        c = apply_overrides(train.DEFAULT_CONFIG, [path], verbose=False)
        assert set(c) == set(train.DEFAULT_CONFIG)
    cpu = apply_overrides(train.DEFAULT_CONFIG, [os.path.join(train.HERE, "config", "train_shakespeare_char_cpu.py")],
                          verbose=False)
    assert (cpu["n_layer"], cpu["n_head"], cpu["n_embd"], cpu["block_size"], cpu["batch_size"], cpu["max_iters"]) \
        == (4, 4, 128, 64, 12, 2000)


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as stop:
        apply_overrides(DEFAULTS, ["--batch_size=5", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out
    for key, value in DEFAULTS.items():
        assert f"  --{key}={value!r}\n" in out  # the defaults, not the overrides given before --help
