r"""Generate text from a trained checkpoint or from GPT-2 weights, streaming it as it is produced.

    python sample.py --init_from=resume --out_dir=out-shakespeare-char --start="ROMEO:" \
        --num_samples=3
    python sample.py --init_from=gpt2 --start=FILE:prompt.txt --temperature=0.8 --top_k=200 \
        --top_p=0.95
    python sample.py --init_from=path/to/hf_dir --temperature=0        # greedy
    python sample.py --init_from=out-sft --question="What is a stack?" --temperature=0
    python sample.py --init_from=smollm2 --question="What is a stack?" --dtype=bfloat16

model.load_model finds the model and its tokenizer; this file streams the text.
"""
import os

import torch

from bpe import TEMPLATES, Tokenizer, prompt_ids
from checkpoints import load_checkpoint
from configurator import ArgumentParser, quiet_broken_pipe
from files import read_text
from model import decode_generated, load_model
from runtime import DTYPES, pick_device, pick_weights_dtype, set_generation_threads


def stream_sample(model, tok, prompt_ids, max_new_tokens, temperature, top_k, top_p, device, write):
    """Generate one sample, calling write(text) with each new piece of text
    as soon as it is complete."""
    ids = list(prompt_ids)
    shown = tok.decode(ids)
    write(shown)
    x = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    for idx_next in model.generate_stream(x, max_new_tokens, temperature, top_k, top_p,
                                          eos_id=tok.eot_id):
        ids.append(int(idx_next))
        text = decode_generated(tok, ids)
        # a multi-byte character may still be incomplete: wait for its rest
        if not text.endswith("\ufffd"):
            write(text[len(shown):])
            shown = text
    write(decode_generated(tok, ids)[len(shown):])
    return ids


def pick_template(template, init_from, out_dir, tok):
    """The format a --question is wrapped in: the one asked for; else the one sft.py trained the
    checkpoint with; else the chat template of a tokenizer that has one (an instruct model); else
    the <|question|>/<|answer|> markers."""
    if template != "auto":
        return template
    path = os.path.join(out_dir if init_from == "resume" else init_from, "ckpt.pt")
    if os.path.isfile(path):  # mmap: only the small config is read, not the weights
        trained = load_checkpoint(path, mmap=True)
        if isinstance(trained.get("config"), dict) and trained["config"].get("template"):
            return trained["config"]["template"]
    return "chat" if isinstance(tok, Tokenizer) and tok.chat_template else "qa"


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init_from", default="resume",
                        help="resume | gpt2 | gpt2-medium | gpt2-large | gpt2-xl | "
                             "DIR (a train.py out_dir or HF dir)")
    parser.add_argument("--out_dir", default="out", help="where resume finds ckpt.pt")
    parser.add_argument("--start", default="\n",
                        help="prompt text, or FILE:path to read it from a file")
    parser.add_argument("--question", default=None,
                        help="a question, sent in the model's training format instead of --start")
    parser.add_argument("--template", default="auto", choices=("auto", *TEMPLATES),
                        help="--question's format: qa (<|question|>/<|answer|>) or chat (the "
                             "tokenizer's chat template); auto: what sft.py trained with, else "
                             "chat for a tokenizer with a chat template, else qa")
    parser.add_argument("--num_samples", type=int, default=3)
    parser.add_argument("--max_new_tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    parser.add_argument("--top_k", type=int, default=200)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default=None,
                        help="cpu | cuda | mps; default: the best one here")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="the weights' dtype: bfloat16 halves the bytes read per token (a CPU "
                             "needs avx512_bf16 or AMX); float16 on GPUs")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0: half the cores, which holds up on a machine "
                             "shared with other busy processes")
    args = parser.parse_args(argv)
    try:
        args.device = pick_device(args.device)
        start = args.start
        if start.startswith("FILE:"):
            start = read_text(start[len("FILE:"):], "--start file")
        if args.num_samples < 1 or args.max_new_tokens < 0:
            raise ValueError(f"--num_samples={args.num_samples} must be >= 1 and --max_new_tokens="
                             f"{args.max_new_tokens} >= 0")
        dtype = pick_weights_dtype(args.device, args.dtype)
        set_generation_threads(args.threads)
        model, tok = load_model(args.init_from, args.out_dir, args.device)
        model = model.to(dtype)  # the weights themselves, not autocast: fewer bytes to read
        if args.question is not None:
            template = pick_template(args.template, args.init_from, args.out_dir, tok)
            ids = prompt_ids(tok, args.question, template)
        else:
            ids = tok.encode(start, allowed_special="all")  # markers in a prompt are meant
        if not ids:
            raise ValueError("--start is empty: give at least one character of prompt")
        torch.manual_seed(args.seed)  # after loading: building a model draws random numbers too
        for _ in range(args.num_samples):
            stream_sample(model, tok, ids, args.max_new_tokens, args.temperature, args.top_k,
                          args.top_p, args.device, lambda s: print(s, end="", flush=True))
            print("\n---------------")
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    with quiet_broken_pipe():
        main()
