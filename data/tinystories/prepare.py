"""TinyStories with our own byte-level BPE (vocab 10,000): train.bin / val.bin (uint16),
meta.json, tokenizer/.

    python data/tinystories/prepare.py                     # download TinyStoriesV2 (GPT-4), ~2.2 GB
    python data/tinystories/prepare.py --input stories.txt # stories separated by <|endoftext|>
    python data/tinystories/prepare.py --input train.txt --val_input valid.txt --num_proc 8

1. the BPE is trained with bpe.py's fast trainer on the training text, `<|endoftext|>` a
   special token;
2. stories are encoded in chunks by num_proc worker processes (progress bars), each story followed
   by the <|endoftext|> id, and the uint16 chunks are appended in order to train.bin / val.bin;
3. the tokenizer is saved to tokenizer/ (tokenizer.bpe + a readable vocab.txt) and embedded in
   meta.json's tokenizer spec {"kind": "bpe", "model": ...}, so sample.py decodes a checkpoint's
   output without this dir.
Without --val_input every 10th story of --input is held out for validation.
"""
import argparse
import itertools
import os
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

# repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bpe import Tokenizer, train_bpe  # noqa: E402
from files import atomic_write  # noqa: E402
from data.fetch import download, write_meta  # noqa: E402

EOT = "<|endoftext|>"
BASE_URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
FILES = {"train": "TinyStoriesV2-GPT4-train.txt", "val": "TinyStoriesV2-GPT4-valid.txt"}
CHUNK_STORIES = 2000  # stories per work item: big enough to amortize sending it to a worker


def read_stories(path):
    """Yield the stories of a text file, split at <|endoftext|>, streaming
    (the file may be gigabytes)."""
    rest = ""
    with open(path, encoding="utf-8") as f:
        while True:
            try:
                block = f.read(1 << 24)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} is not UTF-8 text ({e}); "
                                 "convert it to UTF-8 (e.g. `iconv -t utf-8`)") from None
            if not block:
                break
            *stories, rest = (rest + block).split(EOT)
            yield from (s.strip() for s in stories if s.strip())
    if rest.strip():
        yield rest.strip()


def chunks(stories, size=CHUNK_STORIES):
    it = iter(stories)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


_tokenizer = None


def _init_worker(model_text):
    global _tokenizer
    _tokenizer = Tokenizer.loads(model_text)


def _encode_chunk(stories):
    """A list of stories -> (uint16 ids, <|endoftext|> after each story; the number of stories),
    in a worker."""
    eot = _tokenizer.special_tokens[EOT]
    ids = []
    for story in stories:
        ids += _tokenizer.encode_ordinary(story)
        ids.append(eot)
    return np.array(ids, dtype=np.uint16), len(stories)


def write_split(pool, stories, path, desc):
    """Encode stories in the worker pool, in order, into path; return the token count. Written
    with atomic_write: only a complete file is ever called train.bin, and a failed run leaves no
    partial file."""
    n = 0

    def write(f):
        nonlocal n
        with tqdm(desc=desc, unit=" stories", dynamic_ncols=True) as bar:
            for chunk_ids, size in pool.imap(_encode_chunk, chunks(stories)):
                chunk_ids.tofile(f)
                n += len(chunk_ids)
                bar.update(size)
    atomic_write(path, write)
    return n


def prepare(train_path, val_path, out_dir, vocab_size=10000, num_proc=1):
    """Train the BPE on train_path, write out_dir/{train,val}.bin, meta.json and tokenizer/;
    return meta. val_path None: every 10th story of train_path is validation (the BPE still sees
    the whole file)."""
    if vocab_size > 65536:
        raise ValueError(f"vocab_size={vocab_size} does not fit in uint16 ids (max 65536)")
    print(f"training a {vocab_size:,}-token BPE on {train_path}")
    tok = train_bpe(Path(train_path), vocab_size, special_tokens=[EOT], num_proc=num_proc,
                    progress=True)
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer"))
    if val_path:
        train_stories, val_stories = read_stories(train_path), read_stories(val_path)
    else:
        train_stories = (s for i, s in enumerate(read_stories(train_path)) if i % 10 != 9)
        val_stories = (s for i, s in enumerate(read_stories(train_path)) if i % 10 == 9)
    model_text = tok.dumps()
    with Pool(num_proc, initializer=_init_worker, initargs=(model_text,)) as pool:
        for split, stories in (("train", train_stories), ("val", val_stories)):
            n = write_split(pool, stories, os.path.join(out_dir, f"{split}.bin"),
                            f"tokenizing {split}")
            print(f"{split}: {n:,} tokens")
            if n < 2:
                raise ValueError(f"the {split} split has no stories: give more text")
    return write_meta(out_dir, tok.n_vocab, {"kind": "bpe", "model": model_text})


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input",
                        help="training stories (separated by <|endoftext|>) "
                             "instead of the download")
    parser.add_argument("--val_input",
                        help="validation stories; default: every 10th story of --input")
    parser.add_argument("--vocab_size", type=int, default=10000)
    parser.add_argument("--num_proc", type=int, default=os.cpu_count())
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
        prepare(train_path, val_path, args.out_dir, args.vocab_size, args.num_proc)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
