"""sample.py: tokenizer specs (GPT-2 against tiktoken), and the CLI on an HF directory and a train.py checkpoint."""
from dataclasses import asdict

import pytest
import tiktoken
import tiktoken.load
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import bpe
import sample
import checkpoints
from model import GPT, GPTConfig

CHARS = "\n !',.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def tiktoken_gpt2():
    ranks = tiktoken.load.load_tiktoken_bpe(str(bpe.gpt2_ranks_path()))  # the cache `bpe.py download-gpt2` fills
    return tiktoken.Encoding("gpt2", pat_str=bpe.GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def test_gpt2_spec_matches_tiktoken():
    codec, enc = bpe.tokenizer_from_spec({"kind": "gpt2"}), tiktoken_gpt2()
    text = "Hello world!<|endoftext|>  Ünïcödé 日本語 🤗\n\n  it's 1234 spaces   end"
    ids = codec.encode(text, allowed_special="all")
    assert ids == enc.encode(text, allowed_special="all") and 50256 in ids
    assert codec.decode(ids) == text
    assert codec.eot_id == 50256 and codec.n_vocab == 50257


def test_bpe_and_char_specs():
    tok = bpe.train_bpe("the cat sat on the mat. the cat ate.<|endoftext|>", 270, ["<|endoftext|>"])
    codec = bpe.tokenizer_from_spec({"kind": "bpe", "model": tok.dumps()})
    text = "the mat sat<|endoftext|>"
    ids = codec.encode(text, allowed_special="all")
    assert ids == tok.encode(text, allowed_special="all") and codec.decode(ids) == text
    assert codec.eot_id == tok.special_tokens["<|endoftext|>"] and codec.n_vocab == tok.n_vocab
    char = bpe.tokenizer_from_spec({"kind": "char", "chars": CHARS})
    assert char.encode("Hi!") == [CHARS.index("H"), CHARS.index("i"), CHARS.index("!")]
    assert char.decode(char.encode("ROMEO: what?\n")) == "ROMEO: what?\n" and char.eot_id is None
    with pytest.raises(ValueError, match=r"\['@'\]"):
        char.encode("a@b")
    for bad in ({"kind": "sentencepiece"}, "gpt2", None):
        with pytest.raises(ValueError, match="kind gpt2, char or bpe"):
            bpe.tokenizer_from_spec(bad)


def test_stream_pieces_add_up_to_the_decoded_generation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=50257, n_layer=1, n_head=2, n_embd=16)).eval()
    codec = bpe.tokenizer_from_spec({"kind": "gpt2"})
    prompt = codec.encode("Once upon a time")
    pieces = []
    torch.manual_seed(1)
    ids = sample.stream_sample(model, codec, prompt, 40, 1.0, None, None, "cpu", pieces.append)
    torch.manual_seed(1)
    expected = model.generate(torch.tensor([prompt]), 40, eos_id=50256)[0].tolist()
    assert ids == expected
    assert "".join(pieces) == codec.decode(expected) and len([p for p in pieces if p]) > 10  # streamed


def test_stream_shows_padded_vocab_ids_instead_of_crashing():
    # an untrained model over a 64-row vocab (padded, as train.py does) with a 9-character tokenizer samples
    # ids that no character has
    codec = bpe.tokenizer_from_spec({"kind": "char", "chars": "abcdefgh "})
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=1, n_head=1, n_embd=8)).eval()
    pieces = []
    ids = sample.stream_sample(model, codec, codec.encode("ab"), 20, 1.0, None, None, "cpu", pieces.append)
    assert any(t >= 9 for t in ids)
    expected = "".join("abcdefgh "[t] if t < 9 else f"<|unused {t}|>" for t in ids)
    assert "".join(pieces) == expected


def expected_samples(model, codec, start, n, max_new_tokens, temperature, top_k, seed):
    torch.manual_seed(seed)
    out = ""
    for _ in range(n):
        ids = model.generate(torch.tensor([codec.encode(start)]), max_new_tokens, temperature, top_k,
                             eos_id=codec.eot_id)
        out += codec.decode(ids[0].tolist()) + "\n---------------\n"
    return out


def test_cli_with_hugging_face_directory(tmp_path, capsys):
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=16, n_layer=1, n_head=2))
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "prompt.txt").write_text("The meaning of life is")
    sample.main([f"--init_from={tmp_path / 'hf'}", f"--start=FILE:{tmp_path / 'prompt.txt'}", "--num_samples=2",
                 "--max_new_tokens=12", "--temperature=0.9", "--top_k=50", "--seed=7", "--device=cpu"])
    model = GPT.from_pretrained(str(tmp_path / "hf")).eval()
    codec = bpe.tokenizer_from_spec({"kind": "gpt2"})
    out = capsys.readouterr().out
    assert out == expected_samples(model, codec, "The meaning of life is", 2, 12, 0.9, 50, 7)
    assert out.startswith("The meaning of life is")


def test_cli_resumes_a_char_level_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    config = GPTConfig(block_size=16, vocab_size=len(CHARS), n_layer=1, n_head=2, n_embd=16, rope=True)
    model = GPT(config).eval()
    ckpt = {"model": model.state_dict(), "model_args": asdict(config), "config": {}, "iter_num": 0,
            "best_val_loss": 9.0, "tokenizer": {"kind": "char", "chars": CHARS}}
    checkpoints.save_checkpoint(str(tmp_path / "ckpt.pt"), ckpt)
    sample.main(["--init_from=resume", f"--out_dir={tmp_path}", "--start=ROMEO:", "--num_samples=2",
                 "--max_new_tokens=30", "--temperature=1.0", "--seed=3", "--device=cpu"])  # slides past block_size
    codec = bpe.tokenizer_from_spec(ckpt["tokenizer"])
    expected = expected_samples(model, codec, "ROMEO:", 2, 30, 1.0, 200, 3)
    assert capsys.readouterr().out == expected
    sample.main([f"--init_from={tmp_path}", "--start=ROMEO:", "--num_samples=2", "--max_new_tokens=30",
                 "--temperature=1.0", "--seed=3", "--device=cpu"])  # an out_dir given as --init_from
    assert capsys.readouterr().out == expected


def test_cli_errors_are_clean(tmp_path):
    torch.manual_seed(0)
    small = GPT(GPTConfig(block_size=8, vocab_size=len(CHARS), n_layer=1, n_head=1, n_embd=8))
    small.save_pretrained(tmp_path / "small")
    checkpoints.save_checkpoint(str(tmp_path / "ckpt.pt"), {"model": small.state_dict(), "model_args": asdict(small.config),
                                                      "tokenizer": {"kind": "char", "chars": CHARS}})
    (tmp_path / "latin1.txt").write_bytes("ROMEO: caf\u00e9".encode("latin-1"))
    cases = [(["--init_from=gpt3"], "model 'gpt3' not found"),
             ([f"--init_from={tmp_path / 'small'}"], "smaller than its tokenizer"),
             (["--init_from=resume", f"--out_dir={tmp_path / 'nothing'}"], "not found"),
             (["--init_from=resume", f"--out_dir={tmp_path}", "--start=ROMEO@"], r"\['@'\]"),
             (["--init_from=resume", f"--out_dir={tmp_path}", "--start="], "--start is empty"),
             (["--init_from=resume", f"--out_dir={tmp_path}", f"--start=FILE:{tmp_path / 'no.txt'}"], "no.txt"),
             (["--init_from=resume", f"--out_dir={tmp_path}", f"--start=FILE:{tmp_path}"], "is not a file"),
             (["--init_from=resume", f"--out_dir={tmp_path}", f"--start=FILE:{tmp_path / 'latin1.txt'}"],
              "latin1.txt' is not UTF-8"),
             (["--init_from=resume", f"--out_dir={tmp_path}", "--top_p=2"], "top_p=2.0")]
    for argv, message in cases:
        with pytest.raises(SystemExit, match="^error: .*" + message):
            sample.main(argv + ["--device=cpu", "--max_new_tokens=2"])
