"""TinyStories with our own byte-level BPE (vocab 10,000): train.bin / val.bin (or shards),
meta.json, tokenizer/.

    python data/tinystories/prepare.py                     # download TinyStoriesV2 (GPT-4), ~2.2 GB
    python data/tinystories/prepare.py --input stories.txt # stories separated by <|endoftext|>
    python data/tinystories/prepare.py --input train.txt --val_input valid.txt --num_proc 8

1. the BPE is trained with bpe.py's fast trainer on the training text, `<|endoftext|>` a
   special token;
2. each file is encoded as it is, <|endoftext|> its id, by bpe.encode_file in num_proc processes
   (a progress bar in bytes), and the ids are written as they come: to train.bin / val.bin, or,
   past --shard_tokens ids, to train/000000.bin, ... (uint16 ids, uint32 for a vocab over 65,536);
3. the tokenizer is saved to tokenizer/ (tokenizer.bpe + a readable vocab.txt) and embedded in
   meta.json's tokenizer spec {"kind": "bpe", "model": ...}, so sample.py decodes a checkpoint's
   output without this dir; meta.json also lists the token files.
Without --val_input every 10th story of --input (its ids up to and including its <|endoftext|>)
is held out for validation. Memory stays flat: neither the text nor its ids are ever held whole.
"""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bpe import encode_file, train_bpe  # noqa: E402
from configurator import ArgumentParser  # noqa: E402
from data.fetch import download, write_splits  # noqa: E402
from files import SHARD_TOKENS, token_dtype  # noqa: E402

EOT = "<|endoftext|>"
BASE_URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
FILES = {"train": "TinyStoriesV2-GPT4-train.txt", "val": "TinyStoriesV2-GPT4-valid.txt"}
VAL_EVERY = 10  # without --val_input, every 10th story is validation
READ_IDS = 1 << 24  # ids read back at a time from the held-out stories' file


def hold_out(chunks, eot, dtype, held_file):
    """Yield the training ids of chunks (the ids of a file, in order), writing every VAL_EVERY-th
    story's ids to held_file instead. A story's ids end with its eot id."""
    stories = 0  # stories that ended before this chunk
    for ids in chunks:
        ids = np.asarray(ids, dtype=dtype)
        ends = ids == eot
        story = stories + np.cumsum(ends) - ends  # the story each id belongs to
        held = story % VAL_EVERY == VAL_EVERY - 1
        held_file.write(ids[held].tobytes())
        stories += int(ends.sum())
        yield ids[~held]


def read_ids(f, dtype):
    """Yield the ids of a file of dtype ids from its start, READ_IDS at a time."""
    f.seek(0)
    while len(ids := np.fromfile(f, dtype=dtype, count=READ_IDS)):
        yield ids


def prepare(train_path, val_path, out_dir, vocab_size=10000, num_proc=1,
            shard_tokens=SHARD_TOKENS):
    """Train the BPE on train_path, write out_dir's token files, meta.json and tokenizer/;
    return meta. val_path None: every VAL_EVERY-th story of train_path is validation (the BPE
    still sees the whole file)."""
    print(f"training a {vocab_size:,}-token BPE on {train_path}")
    tok = train_bpe(Path(train_path), vocab_size, special_tokens=[EOT], num_proc=num_proc,
                    progress=True)
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer"))
    spec, dtype = {"kind": "bpe", "model": tok.dumps()}, token_dtype(tok.n_vocab)

    def encode(path):
        return encode_file(tok, path, {EOT}, num_proc, progress=True)
    if val_path:
        return write_splits(out_dir, tok.n_vocab, spec,
                            {"train": encode(train_path), "val": encode(val_path)}, shard_tokens)
    # the held-out stories wait in a temporary file until train is written
    with tempfile.TemporaryFile(dir=out_dir) as held:
        return write_splits(out_dir, tok.n_vocab, spec,
                            {"train": hold_out(encode(train_path), tok.eot_id, dtype, held),
                             "val": read_ids(held, dtype)}, shard_tokens)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input",
                        help="training stories (separated by <|endoftext|>) "
                             "instead of the download")
    parser.add_argument("--val_input",
                        help="validation stories; default: every 10th story of --input")
    parser.add_argument("--vocab_size", type=int, default=10000)
    parser.add_argument("--num_proc", type=int, default=os.cpu_count(),
                        help="processes that train the BPE and encode (default: one per CPU)")
    parser.add_argument("--shard_tokens", type=int, default=SHARD_TOKENS,
                        help="a split of more ids is written in shards of this many")
    parser.add_argument("--out_dir", default=here)
    args = parser.parse_args()
    try:
        train_path, val_path = args.input, args.val_input
        if train_path is None:
            train_path, val_path = (os.path.join(here, FILES[s]) for s in ("train", "val"))
            for path in (train_path, val_path):
                if not os.path.isfile(path):
                    print(f"downloading {BASE_URL + os.path.basename(path)}")
                    try:
                        download(BASE_URL + os.path.basename(path), path, timeout=60)
                    except OSError as e:
                        raise OSError(f"could not download TinyStories ({e}); "
                                      "offline, copy the files elsewhere "
                                      "and pass --input (and --val_input)") from None
        for path in (train_path, val_path):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found")
        if args.shard_tokens < 1:
            raise ValueError(f"--shard_tokens {args.shard_tokens}: give a positive number")
        prepare(train_path, val_path, args.out_dir, args.vocab_size, args.num_proc,
                args.shard_tokens)
    except (ValueError, OSError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")
