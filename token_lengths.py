"""
Measure a dataset's token lengths and choose max_length and gen_length from the data,
not by guessing.

A fine-tuning config with `max_length: 2084, gen_length: 1024` wastes memory and hours on padding,
while `max_length: 24` silently truncates most answers. The right numbers come from the data: the
longest example (nothing truncated), or the length that covers a share of the examples such as 95%.

    python token_lengths.py data/sft/train.txt --sft       # rows as sft.py builds them
    python token_lengths.py rationales.jsonl --prompt_field question --completion_field rationale
    python token_lengths.py corpus.txt --tokenizer char    # one example per line
    python token_lengths.py notes.txt --blocks --tokenizer path/to/vocab.txt
    python token_lengths.py big.jsonl --field text --num_proc 2 --coverage 0.95 --write config.json

Inputs are streamed line by line (a multi-GB file never sits in memory; only a few ints per example
are kept), tokenized in `--num_proc` worker processes, and summarised as
count/min/mean/max/percentiles, a terminal histogram, the longest example, and a table of candidate
lengths with what each truncates and pads.
"""
import argparse
import array
import json
import math
import os
import re
import stat
import sys
from collections import deque
from fractions import Fraction
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

from bpe import load_tokenizer
from configurator import quiet_broken_pipe
from files import QUESTION, atomic_write, qa_prompt, read_lines, read_qa_file
from wordpiece import WordPieceTokenizer

PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}
CANDIDATES = {"p90": 0.9, "p95": 0.95, "p99": 0.99, "max": 1.0}

# -----------------------------------------------------------------------------
# tokenizers: every kind reduces to one function text -> number of tokens


def load_counter(spec, lowercase=True):
    """'gpt2' | 'char' | a bpe.py model dir or .bpe file | a WordPiece vocab.txt
    -> fn(text) -> (tokens, how many of them are unknown: WordPiece's [UNK]; 0 for byte-level)."""
    if spec == "char":
        # one token per Unicode code point, as in nanoGPT's shakespeare_char
        return lambda text: (len(text), 0)
    if spec == "gpt2" or os.path.isdir(spec) or spec.endswith(".bpe"):
        tok = load_tokenizer(spec)
        # ordinary text: a literal "<|endoftext|>" inside an example is text,
        # as sft.py's markers are
        return lambda text: (len(tok.encode_ordinary(text)), 0)
    if os.path.isfile(spec):
        tok = WordPieceTokenizer.from_vocab_file(spec, lowercase=lowercase)

        def count(text):
            ids = tok.encode(text)
            return len(ids), ids.count(tok.unk_id)
        return count
    raise FileNotFoundError(f"--tokenizer {spec!r}: not 'gpt2' or 'char', and no such directory "
                            "or file; give gpt2, char, a bpe.py model directory/.bpe file, "
                            "or a WordPiece vocab.txt")


# -----------------------------------------------------------------------------
# reading: every format becomes a stream of (where, prompt, completion, nbytes);
# prompt is None for plain text


def sniff_format(path, blocks):
    """'qa' if the first non-blank line is sft.py's question marker, else 'blocks' or 'lines'."""
    for _, text, _ in read_lines(path):
        if text.strip():
            if text.strip() == QUESTION:
                return "qa"
            if path.endswith((".jsonl", ".json")):
                try:
                    keys = ", ".join(json.loads(text))
                except (json.JSONDecodeError, TypeError):
                    keys = "?"
                raise ValueError(f"{path}: a JSONL file needs --field NAME, or --prompt_field and "
                                 f"--completion_field (the first row's keys: {keys})")
            break
    return "blocks" if blocks else "lines"


def iter_jsonl(path, field, prompt_field, completion_field, bad):
    for lineno, text, nbytes in read_lines(path):
        if not text.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            bad(f"{where}: not valid JSON ({e.msg}, column {e.colno})")
            continue
        names = [field] if field else [prompt_field, completion_field]
        missing = [n for n in names if not isinstance(row, dict) or not isinstance(row.get(n), str)]
        if missing:
            keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            bad(f"{where}: no string field {missing[0]!r} (this row has: {keys})")
            continue
        yield ((where, None, row[field], nbytes) if field
               else (where, row[prompt_field], row[completion_field], nbytes))


def iter_text(path, blocks):
    """One example per non-empty line, or (blocks) per run of non-blank lines
    separated by blank lines."""
    block, start, size = [], 0, 0
    for lineno, text, nbytes in read_lines(path):
        if not blocks:
            if text.strip():
                yield f"{path}:{lineno}", None, text, nbytes
            continue
        size += nbytes
        if text.strip():
            start = start or lineno
            block.append(text)
        elif block:
            yield f"{path}:{start}", None, "\n".join(block), size
            block, start, size = [], 0, 0
    if block:
        yield f"{path}:{start}", None, "\n".join(block), size


def iter_qa(path, bad):
    """<|question|>/<|answer|> blocks, parsed by files.read_qa_file (the one parser for the format).
    That reader returns a list: fine for this hand-written format, which is small."""
    pairs, problems = read_qa_file(path)
    for problem in problems:  # already "path:line: what is wrong"
        bad(problem)
    size = os.path.getsize(path)
    for i, (question, answer) in enumerate(pairs):
        yield f"{path} (pair {i + 1})", question, answer, size if i == 0 else 0


def iter_examples(paths, field, prompt_field, completion_field, blocks, skip_bad, skipped):
    """Stream (where, prompt, completion, nbytes) from every file. A bad row raises ValueError
    naming its file and line, or with skip_bad is appended to the list `skipped`
    ("path:line: why") and left out."""
    def bad(problem):
        if not skip_bad:
            raise ValueError(f"{problem}; "
                             "fix the row or pass --skip_bad to count and skip such rows")
        skipped.append(problem)
    formats = ["jsonl" if field or prompt_field else sniff_format(path, blocks) for path in paths]
    if "qa" in formats and set(formats) != {"qa"}:
        raise ValueError(f"{', '.join(paths)}: mixes <|question|>/<|answer|> files with plain "
                         "text; measure each kind on its own")
    for path, fmt in zip(paths, formats):
        if fmt == "jsonl":
            yield from iter_jsonl(path, field, prompt_field, completion_field, bad)
        elif fmt == "qa":
            yield from iter_qa(path, bad)
        else:
            yield from iter_text(path, blocks)


# -----------------------------------------------------------------------------
# counting, in worker processes: each gets the tokenizer spec (not the tokenizer) and loads it once

_count = None  # per process: (fn text -> int, prompt template, tokens added after each completion)


def _init_worker(spec, lowercase, prompt_template, eot):
    global _count
    _count = (load_counter(spec, lowercase), prompt_template, eot)


def _count_chunk(chunk):
    """[(prompt or None, completion)] -> (prompt lengths or None, completion lengths, unknown
    tokens in all of them)."""
    count, template, eot = _count
    completions = [count(c) for _, c in chunk]
    unknown = sum(u for _, u in completions)
    completions = [n + eot for n, _ in completions]
    if chunk[0][0] is None:
        return None, completions, unknown
    prompts = [count(template.replace("{prompt}", p)) for p, _ in chunk]
    return [n for n, _ in prompts], completions, unknown + sum(u for _, u in prompts)


class Lengths:
    """Per-example token lengths of a dataset (int64 arrays in file order)
    and its longest example."""

    def __init__(self, prompt, completion, longest, skipped, unknown=0):
        self.prompt = prompt  # [N] or None for plain text (no prompt/completion split)
        self.completion = completion  # [N]; for plain text, the whole example
        self.total = completion if prompt is None else prompt + completion  # [N]
        self.longest = longest  # (where, prompt, completion, total length)
        self.skipped = skipped  # ["path:line: why"] rows left out by --skip_bad
        self.unknown = unknown  # how many tokens are unknown ([UNK]) in all examples


def measure(paths, tokenizer="gpt2", field=None, prompt_field=None, completion_field=None,
            blocks=False, skip_bad=False, prompt_template="{prompt}", eot=0, lowercase=True,
            num_proc=1, chunk_size=1000):
    """Tokenize every example of `paths` and return their Lengths."""
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
    if bool(prompt_field) != bool(completion_field):
        raise ValueError("give both --prompt_field and --completion_field "
                         "(or --field for one text per row)")
    if field and prompt_field:
        raise ValueError("give either --field or --prompt_field/--completion_field, not both")
    if blocks and (field or prompt_field):
        raise ValueError("--blocks is for text files; a JSONL row is one example already")
    skipped = []
    examples = iter_examples(paths, field, prompt_field, completion_field, blocks, skip_bad,
                             skipped)
    # load in this process first: a bad spec fails here, cleanly (a Pool whose initializer raises
    # restarts its workers forever), and forked workers inherit what bpe.py has cached
    initargs = (tokenizer, lowercase, prompt_template, eot)
    _init_worker(*initargs)
    # 8 bytes per example each
    prompt, completion, longest, unknown = array.array("q"), array.array("q"), None, 0
    pending = deque()  # (result, chunk, wheres), in file order

    def collect(result, chunk, wheres):
        nonlocal longest, unknown
        p, c, u = result.get() if pool else result
        unknown += u
        totals = c if p is None else [a + b for a, b in zip(p, c)]
        i = max(range(len(totals)), key=totals.__getitem__)
        if longest is None or totals[i] > longest[3]:
            longest = (wheres[i], chunk[i][0], chunk[i][1], totals[i])
        prompt.extend(p or [])
        completion.extend(c)

    def submit(chunk, wheres):
        pending.append((pool.apply_async(_count_chunk, (chunk,)) if pool else _count_chunk(chunk),
                        chunk, wheres))
        # at most 2 chunks per worker in flight:
        # Pool.imap would read the whole input ahead into memory
        while len(pending) > (2 * num_proc if pool else 0):
            collect(*pending.popleft())

    pool = Pool(num_proc, _init_worker, initargs) if num_proc > 1 else None
    # disable=None: no bar when stderr is not a terminal (logs, tests)
    bar = tqdm(total=sum(os.path.getsize(p) for p in paths), unit="B", unit_scale=True,
               desc="tokenizing", disable=None)
    try:
        chunk, wheres = [], []
        for where, p, c, nbytes in examples:
            chunk.append((p, c))
            wheres.append(where)
            bar.update(nbytes)
            if len(chunk) == chunk_size:
                submit(chunk, wheres)
                chunk, wheres = [], []
        if chunk:
            submit(chunk, wheres)
        while pending:
            collect(*pending.popleft())
    finally:
        bar.close()
        if pool:
            pool.terminate()
    if not completion:
        why = f" ({len(skipped)} rows skipped as bad)" if skipped else ""
        raise ValueError(f"no examples found in {', '.join(paths)}{why}: the dataset is empty")
    arr = lambda xs: np.frombuffer(xs, dtype=np.int64)
    return Lengths(arr(prompt) if prompt else None, arr(completion), longest, skipped, unknown)


# -----------------------------------------------------------------------------
# statistics and the recommendation


def length_at(lengths, coverage):
    """The smallest length L such that at least `coverage` of the examples have length <= L
    (numpy's percentile with method='inverted_cdf'; never interpolated, because a length is
    an integer). Fraction(repr(...)) keeps 0.07 * 100 exactly 7, where float arithmetic
    would give 7.000000000000001."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        raise ValueError("no lengths given: the dataset is empty")
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage={coverage}: must be in (0, 1], "
                         "e.g. 1.0 (truncate nothing) or 0.95")
    k = math.ceil(lengths.size * Fraction(repr(float(coverage))))  # examples that must fit, 1..N
    return int(np.partition(lengths, k - 1)[k - 1])


def length_stats(lengths):
    """{min, mean, max, p50, p90, p95, p99, p99_9} of one array of lengths."""
    lengths = np.asarray(lengths)
    stats = {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2),
             "max": int(lengths.max())}
    return stats | {name: length_at(lengths, q) for name, q in PERCENTILES.items()}


def recommend_length(lengths, coverage=1.0, multiple_of=8):
    """The smallest length covering `coverage` of `lengths` (1.0: nothing truncated),
    rounded up to a multiple of `multiple_of` (8 suits tensor cores and costs at most 7
    positions of padding)."""
    if int(multiple_of) != multiple_of or multiple_of < 1:
        raise ValueError(f"multiple_of={multiple_of}: must be a positive integer, "
                         "e.g. 8 (or 1 for no rounding)")
    return -(-length_at(lengths, coverage) // multiple_of) * multiple_of


def padding_share(lengths, max_length, batch_size=None):
    """Share of padding positions when every row is cut to max_length and padded either to
    max_length (batch_size None) or to the longest row of its batch (dynamic padding, batches in
    the given order). No positions at all (every row empty, max_length 0) is no padding, not 0/0."""
    cut = np.minimum(np.asarray(lengths), max_length)  # [N]
    if batch_size is None:
        slots = cut.size * max_length
    else:
        starts = np.arange(0, cut.size, batch_size)
        rows = np.diff(np.append(starts, cut.size))  # [B] rows per batch (the last may be short)
        slots = (np.maximum.reduceat(cut, starts) * rows).sum()
    return 1 - cut.sum() / slots if slots else 0.0


def candidates(lengths, coverage, multiple_of, batch_size):
    """Rows (name, length, truncated count, padding to length, padding per batch) for
    p90/p95/p99/max and the asked-for coverage. Batches are drawn from a (seeded) shuffle, as
    training draws them: in file order, similar examples sit together and dynamic padding would
    look cheaper than it will be."""
    shuffled = np.random.default_rng(0).permutation(lengths)
    wanted = dict(CANDIDATES)
    if coverage not in wanted.values():
        wanted[f"{coverage:g}"] = coverage
    rows = []
    for name, q in sorted(wanted.items(), key=lambda kv: kv[1]):
        n = recommend_length(lengths, q, multiple_of)
        rows.append((name, n, int((lengths > n).sum()), padding_share(lengths, n),
                     padding_share(shuffled, n, batch_size)))
    return rows


def summary(lengths, coverage=1.0, multiple_of=8):
    """The --json object."""
    paired = lengths.prompt is not None
    return {
        "count": int(lengths.total.size),
        "prompt": length_stats(lengths.prompt) if paired else None,
        "completion": length_stats(lengths.completion) if paired else None,
        "total": length_stats(lengths.total),
        "unknown_share": lengths.unknown / max(int(lengths.total.sum()), 1),
        "recommended": {
            "max_length": recommend_length(lengths.total, coverage, multiple_of),
            "gen_length": recommend_length(lengths.completion, coverage, multiple_of)
                          if paired else None,
        },
    }


# -----------------------------------------------------------------------------
# output: report, histogram, plot, config update


def histogram(lengths, bins=16, width=40):
    """A text histogram: integer-aligned bins of equal width from min to max."""
    lo, hi = int(lengths.min()), int(lengths.max())
    step = max(1, math.ceil((hi - lo + 1) / bins))
    counts = np.bincount((lengths - lo) // step)
    lines = []
    for i, n in enumerate(counts):
        bar = "#" * round(width * n / counts.max()) or ("." if n else "")
        lines.append(f"  {lo + i * step:>7}-{lo + (i + 1) * step - 1:<7}|{bar} {n}")
    return "\n".join(lines)


def cut_to_screen(text, max_lines=12, max_chars=600):
    short = "\n".join(text.splitlines()[:max_lines])[:max_chars]
    return short + (f" ... [{len(text) - len(short)} more characters]" if len(short) < len(text)
                    else "")


def report(s, lengths, paths, tokenizer, coverage, multiple_of, batch_size):
    """The human-readable report of `lengths`, whose summary() is `s`."""
    out = [f"{s['count']:,} examples in {', '.join(paths)}, tokenizer {tokenizer}"]
    if lengths.unknown:
        out.append(f"unknown tokens ([UNK]): {lengths.unknown:,}, {s['unknown_share']:.1%} of all")
    if lengths.skipped:
        out.append(f"skipped {len(lengths.skipped)} bad row(s), the first: {lengths.skipped[0]}")
    out.append(f"\n{'tokens':<11}{'min':>7}{'mean':>9}{'p50':>7}{'p90':>7}{'p95':>7}"
               f"{'p99':>7}{'p99.9':>7}{'max':>7}")
    for name in ("prompt", "completion", "total"):
        if s[name]:
            st = s[name]
            out.append(f"{name:<11}{st['min']:>7}{st['mean']:>9.1f}" + "".join(
                f"{st[k]:>7}" for k in ("p50", "p90", "p95", "p99", "p99_9", "max")))
    out.append(f"\ntotal tokens per example:\n{histogram(lengths.total)}")
    where, prompt, completion, n = lengths.longest
    shown = cut_to_screen(completion) if prompt is None else \
        f"[prompt]\n{cut_to_screen(prompt)}\n[completion]\n{cut_to_screen(completion)}"
    out.append(f"\nlongest example: {where}, {n} tokens\n{shown}")
    tables = [("max_length", lengths.total)] + ([("gen_length", lengths.completion)]
                                                if s["prompt"] else [])
    for key, arr in tables:
        out.append(f"\n{key} candidates ({'total' if key == 'max_length' else 'completion'} "
                   f"tokens, rounded up to a multiple of {multiple_of}; "
                   f"padding per batch: shuffled batches of {batch_size})")
        out.append(f"  {'coverage':<9}{'length':>7}{'truncated':>18}"
                   f"{'pad to length':>15}{'pad per batch':>15}")
        for name, n, cut, pad, pad_batch in candidates(arr, coverage, multiple_of, batch_size):
            trunc = f"{cut:,} ({cut / arr.size:.1%})"
            out.append(f"  {name:<9}{n:>7}{trunc:>18}{pad:>15.1%}{pad_batch:>15.1%}")
    rec = s["recommended"]
    gen = f" gen_length={rec['gen_length']}" if rec["gen_length"] is not None else ""
    out.append(f"\nrecommended (coverage {coverage:g}, multiple of {multiple_of}): "
               f"max_length={rec['max_length']}{gen}")
    return "\n".join(out)


def plot(lengths, path, recommended):
    """Histograms of prompt/completion/total with the recommended lengths marked,
    if matplotlib is installed."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: --plot {path} skipped (pip install matplotlib)",
              file=sys.stderr)
        return False
    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt
    series = [("total", lengths.total, "max_length")]
    if lengths.prompt is not None:
        series += [("prompt", lengths.prompt, None),
                   ("completion", lengths.completion, "gen_length")]
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5), squeeze=False)
    for ax, (name, arr, key) in zip(axes[0], series):
        ax.hist(arr, bins=min(50, int(arr.max() - arr.min()) + 1))
        if key is not None:
            ax.axvline(recommended[key], color="red", linestyle="--",
                       label=f"{key}={recommended[key]}")
            ax.legend()
        ax.set(title=f"{name} tokens ({arr.size:,} examples)", xlabel="tokens", ylabel="examples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_config(path, updates):
    """Set `updates` in the JSON object at `path`, atomically (temp file in the same dir,
    then os.replace), keeping every other key, the key order and the file's indentation.
    Returns the old values (None for keys it did not have; a missing file starts as {})."""
    try:
        text = "{\n    }"  # a missing config starts empty, indented as configs are
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                text = f.read()
        config = json.loads(text)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid UTF-8, so not a JSON config; "
                         "--write needs a JSON object config") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); "
                         "--write needs a JSON object config") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: holds a JSON {type(config).__name__}, not an object; "
                         "--write needs {...}")
    old = {k: config.get(k) for k in updates}
    config.update(updates)
    indent = re.search(r"\n([ \t]+)\S", text)  # keep the file's own indentation (None: one line)
    text = json.dumps(config, indent=indent.group(1) if indent else None, ensure_ascii=False) + "\n"
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.isfile(path) else 0o644
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), mode=mode)
    return old


# -----------------------------------------------------------------------------


def warn_unknown(share, tokenizer, limit=0.01):
    """Warn on stderr when more than `limit` of the tokens are [UNK] -> whether it warned: the
    lengths then describe a vocab that does not fit the text, not the model's real rows."""
    if share <= limit:
        return False
    print(f"warning: {share:.1%} of the tokens are [UNK]: the vocab {tokenizer} does not cover "
          "this text (another language or script, or cased text with an uncased vocab: try "
          "--cased), so the lengths are not what a model with a fitting vocab sees",
          file=sys.stderr)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip().replace("\n", " "),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+",
                    help="text (one example per line), JSONL, or <|question|>/<|answer|> blocks")
    ap.add_argument("--tokenizer", default="gpt2",
                    help="gpt2 | char | bpe.py model dir or .bpe | WordPiece vocab.txt")
    ap.add_argument("--cased", action="store_true", help="WordPiece: do not lowercase")
    ap.add_argument("--field", help="JSONL: the text field (one text per row)")
    ap.add_argument("--prompt_field", help="JSONL: the prompt field, e.g. question")
    ap.add_argument("--completion_field",
                    help="JSONL: the completion field, e.g. rationale or answer")
    ap.add_argument("--blocks", action="store_true", help="text: examples separated by blank lines")
    ap.add_argument("--skip_bad", action="store_true",
                    help="count and skip bad rows instead of stopping")
    ap.add_argument("--prompt_template", default="{prompt}",
                    help="what the model sees for a prompt, e.g. $'Q: {prompt}\\nA: '")
    ap.add_argument("--eot", type=int, default=0,
                    help="tokens added after each completion (1: an end-of-text token)")
    ap.add_argument("--sft", action="store_true",
                    help="count rows as sft.py builds them: its prompt around the question, and an "
                         "end-of-text token after the answer (sets --prompt_template and --eot 1)")
    ap.add_argument("--coverage", type=float, default=1.0,
                    help="share of examples to fit (1.0: truncate none)")
    ap.add_argument("--multiple_of", type=int, default=8,
                    help="round recommendations up to a multiple of this")
    ap.add_argument("--batch_size", type=int, default=8,
                    help="batch size for the dynamic-padding column")
    ap.add_argument("--num_proc", type=int, default=1, help="tokenizer worker processes")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object instead of the report")
    ap.add_argument("--write", metavar="CONFIG.json",
                    help="update max_length and gen_length in this JSON config")
    ap.add_argument("--max_length_key", default="max_length")
    ap.add_argument("--gen_length_key", default="gen_length")
    ap.add_argument("--plot", metavar="FILE.png", help="histograms as a PNG (needs matplotlib)")
    args = ap.parse_args(argv)
    try:
        if args.num_proc < 1 or args.batch_size < 1:
            raise ValueError(f"--num_proc={args.num_proc} --batch_size={args.batch_size}: "
                             "both must be >= 1")
        if args.sft:
            args.prompt_template, args.eot = qa_prompt("{prompt}"), 1  # the row sft.py builds
        if "{prompt}" not in args.prompt_template:
            raise ValueError(f"--prompt_template {args.prompt_template!r}: must contain {{prompt}}")
        # bad --coverage/--multiple_of fail before the work
        recommend_length([1], args.coverage, args.multiple_of)
        lengths = measure(args.files, args.tokenizer, args.field, args.prompt_field,
                          args.completion_field, args.blocks, args.skip_bad, args.prompt_template,
                          args.eot, not args.cased, args.num_proc)
        s = summary(lengths, args.coverage, args.multiple_of)
        warn_unknown(s["unknown_share"], args.tokenizer)
        print(json.dumps(s) if args.json else report(s, lengths, args.files, args.tokenizer,
                                                       args.coverage, args.multiple_of,
                                                       args.batch_size))
        if args.plot and plot(lengths, args.plot, s["recommended"]):
            print(f"wrote {args.plot}", file=sys.stderr)
        if args.write:
            rec = s["recommended"]
            updates = {args.max_length_key: rec["max_length"]}
            if rec["gen_length"] is not None:
                updates[args.gen_length_key] = rec["gen_length"]
            old = write_config(args.write, updates)
            print(f"wrote {args.write}: "
                  + ", ".join(f"{k} {old[k]} -> {v}" for k, v in updates.items()), file=sys.stderr)
            if rec["gen_length"] is None:
                print(f"{args.gen_length_key} not written: plain text has no completion "
                      "(use --prompt_field and --completion_field)", file=sys.stderr)
    except BrokenPipeError:
        raise  # piped into `head`, which stopped reading: quiet_broken_pipe ends it quietly
    except (ValueError, OSError) as e:
        # OSError: an unreadable file, a --write dir we may not write in
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with quiet_broken_pipe():
        sys.exit(main())
