"""Generate text from a trained checkpoint or from GPT-2 weights, streaming it as it is produced.

    python sample.py --init_from=resume --out_dir=out-shakespeare-char --start="ROMEO:" --num_samples=3
    python sample.py --init_from=gpt2 --start=FILE:prompt.txt --temperature=0.8 --top_k=200 --top_p=0.95
    python sample.py --init_from=path/to/hf_dir --temperature=0        # greedy

Also home of `tokenizer_from_spec`, which turns the tokenizer spec stored in checkpoints and datasets' meta.pkl
into encode/decode functions (train.py, sft.py and hellaswag.py use it too).
"""
import argparse
import os
from dataclasses import dataclass
from typing import Callable

import torch

import train  # train.py owns the checkpoint format and the device choice
from files import read_text
from model import GPT

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


@dataclass
class TextCodec:
    encode: Callable[[str], list]  # text -> token ids
    decode: Callable[[list], str]  # token ids -> text
    eot_id: int | None  # the end-of-text token, if the vocabulary has one
    vocab_size: int


def tokenizer_from_spec(spec):
    """A tokenizer spec -> TextCodec. The spec is {"kind": "gpt2"} | {"kind": "char", "chars": "..."} |
    {"kind": "bpe", "model": Tokenizer.dumps()}."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind in ("gpt2", "bpe"):
        import bpe  # GPT-2's rank file comes from bpe.py's cache, so only import it when needed
        tok = bpe.gpt2_tokenizer() if kind == "gpt2" else bpe.Tokenizer.loads(spec["model"])
        # special tokens such as <|endoftext|> written in a prompt are meant as themselves
        return TextCodec(encode=lambda text: tok.encode(text, allowed_special="all"), decode=tok.decode,
                         eot_id=tok.special_tokens.get("<|endoftext|>"), vocab_size=tok.n_vocab)
    if kind == "char":
        chars = spec["chars"]
        stoi = {ch: i for i, ch in enumerate(chars)}

        def encode(text):
            unknown = sorted(set(text) - set(stoi))
            if unknown:
                raise ValueError(f"characters {unknown[:10]} are not in this model's character vocabulary")
            return [stoi[ch] for ch in text]
        return TextCodec(encode=encode, decode=lambda ids: "".join(chars[i] for i in ids), eot_id=None,
                         vocab_size=len(chars))
    raise ValueError(f"tokenizer spec {str(spec)[:80]!r}: expected a dict with kind gpt2, char or bpe")


def decode_generated(codec, ids):
    """Text of generated ids. A model's vocab_size is padded past its tokenizer's (to a multiple of 64), and a
    barely trained model may sample one of those ids, which no text decodes to: it is shown as <|unused ID|>."""
    if max(ids, default=0) < codec.vocab_size:  # the usual case, without a Python loop over every id
        return codec.decode(ids)
    pieces, run = [], []
    for t in ids:
        if t < codec.vocab_size:
            run.append(t)
        else:
            pieces += [codec.decode(run), f"<|unused {t}|>"]
            run = []
    return "".join(pieces) + codec.decode(run)


def load_model(init_from, out_dir, device):
    """-> (GPT in eval mode on device, TextCodec) for resume (out_dir/ckpt.pt), a GPT-2 name, or a directory:
    a train.py out_dir (it holds ckpt.pt) or a Hugging Face one."""
    if init_from != "resume" and os.path.isfile(os.path.join(init_from, "ckpt.pt")):
        init_from, out_dir = "resume", init_from
    if init_from == "resume":
        ckpt = train.load_checkpoint(os.path.join(out_dir, "ckpt.pt"), map_location=device)
        if "tokenizer" not in ckpt:
            raise ValueError(f"{out_dir}/ckpt.pt has no 'tokenizer' spec: it was not written by this train.py")
        model, codec = train.model_from_checkpoint(ckpt, device), tokenizer_from_spec(ckpt["tokenizer"])
    elif init_from in GPT2_NAMES or os.path.isdir(init_from):
        model, codec = GPT.from_pretrained(init_from), tokenizer_from_spec({"kind": "gpt2"})
    else:
        # no flag name: sample.py's --init_from and hellaswag.py's --model both end up here
        raise ValueError(f"model {init_from!r} not found: expected resume, one of {', '.join(GPT2_NAMES)}, "
                         "or an existing directory (a train.py out_dir or a Hugging Face GPT-2 one)")
    if model.config.vocab_size < codec.vocab_size:
        raise ValueError(f"the model's vocab_size={model.config.vocab_size} is smaller than its tokenizer's "
                         f"{codec.vocab_size}: wrong tokenizer for this model")
    return model.to(device).eval(), codec


def stream_sample(model, codec, prompt_ids, max_new_tokens, temperature, top_k, top_p, device, write):
    """Generate one sample, calling write(text) with each new piece of text as soon as it is complete."""
    ids = list(prompt_ids)
    shown = codec.decode(ids)
    write(shown)
    x = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    for idx_next in model.generate_stream(x, max_new_tokens, temperature, top_k, top_p, eos_id=codec.eot_id):
        ids.append(int(idx_next))
        text = decode_generated(codec, ids)
        if not text.endswith("\ufffd"):  # a multi-byte character may still be incomplete: wait for its rest
            write(text[len(shown):])
            shown = text
    write(decode_generated(codec, ids)[len(shown):])
    return ids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init_from", default="resume",
                        help="resume | gpt2 | gpt2-medium | gpt2-large | gpt2-xl | DIR (a train.py out_dir or HF dir)")
    parser.add_argument("--out_dir", default="out", help="where resume finds ckpt.pt")
    parser.add_argument("--start", default="\n", help="prompt text, or FILE:path to read it from a file")
    parser.add_argument("--num_samples", type=int, default=3)
    parser.add_argument("--max_new_tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    parser.add_argument("--top_k", type=int, default=200)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default=None, help="cpu | cuda | mps; default: the best one here")
    args = parser.parse_args(argv)
    args.device = train.pick_device(args.device)
    try:
        start = args.start
        if start.startswith("FILE:"):
            start = read_text(start[len("FILE:"):], "--start file")
        model, codec = load_model(args.init_from, args.out_dir, args.device)
        prompt_ids = codec.encode(start)
        if not prompt_ids:
            raise ValueError("--start is empty: give at least one character of prompt")
        torch.manual_seed(args.seed)  # after loading: building a model draws random numbers too
        for _ in range(args.num_samples):
            stream_sample(model, codec, prompt_ids, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                          args.device, lambda s: print(s, end="", flush=True))
            print("\n---------------")
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
