"""Supervised fine-tuning (SFT) of a GPT on question/answer pairs.

    python sft.py config/sft_demo_cpu.py                 # the demo: Korean/English programming Q/A
    python sft.py config/sft_demo_cpu.py --packing=True  # the same, examples packed into full rows
    python sft.py config/sft_demo_cpu.py --show_example=3   # what the loss sees, then exit

Each example is one row: prompt + answer + <|endoftext|>, where
    prompt = "<|question|>\\n{question}\\n<|answer|>\\n"
The model reads the whole row but is only taught the answer and the end-of-text token: every target
inside the prompt is -100 (cross-entropy's ignore_index), so it learns to answer, not to ask, and to stop.
"""
import json
import math
import os
import sys
import time

import torch

QUESTION, ANSWER = "<|question|>", "<|answer|>"
IGNORE = -100  # F.cross_entropy's ignore_index: targets we do not learn


# ----------------------------------------------------------------------------- data files
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
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    lines = text.splitlines()
    read = _read_jsonl if str(path).endswith(".jsonl") else _read_blocks
    pairs, problems = read(lines, str(path), question_field, answer_field)
    if strict and problems:
        raise ValueError(f"{len(problems)} malformed example(s) (strict=True), first: {problems[0]}")
    return pairs, problems


def _read_blocks(lines, path, *_fields):
    pairs, problems = [], []
    block = None  # {"line": where the block starts, "q": [lines] (None: orphan answer), "a": [lines] or None}

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
                block = {"line": n, "q": None, "a": []}  # its lines are skipped up to the next question
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
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
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


# ----------------------------------------------------------------------------- rows, batches, packing
def make_row(prompt, completion):
    """(prompt ids, completion ids) -> (inputs, targets), two lists of len(prompt) + len(completion) - 1.

    completion is answer + [eot] (or an answer cut by max_length, without eot). inputs are the row minus
    its last token; targets[i] = row[i + 1], with every target that is still a prompt token ignored.
    """
    row = prompt + completion
    return row[:-1], [IGNORE] * (len(prompt) - 1) + completion


def pad_batch(rows, pad_id):
    """rows: list of (inputs, targets) -> inputs, targets LongTensor [B, T], T = the longest row of THIS batch.

    Padding goes on the right: with a causal mask no real token can see it, and its targets are ignored.
    """
    T = max(len(x) for x, _ in rows)
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for b, (x, y) in enumerate(rows):
        inputs[b, : len(x)] = torch.tensor(x, dtype=torch.long)
        targets[b, : len(y)] = torch.tensor(y, dtype=torch.long)
    return inputs, targets


def sft_batch(examples, eot_id, pad_id):
    """examples: list of (prompt ids, answer ids) -> inputs, targets [B, T]; each row is prompt + answer + [eot]."""
    return pad_batch([make_row(p, a + [eot_id]) for p, a in examples], pad_id)


def pack(lengths, block_size):
    """Greedy packing: walk the examples in order, start a new row when the next one does not fit.

    lengths: input tokens per example (each <= block_size). Returns a list of rows, each a list of indices.
    """
    rows, used = [], block_size  # "used = block_size" forces a new row for the first example
    for i, n in enumerate(lengths):
        if used + n > block_size:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    return rows


def packed_batch(packed_rows, pad_id):
    """packed_rows: list of rows, each a list of (inputs, targets) -> inputs, targets, positions [B, T], mask [B, T, T].

    mask[b, i, j] is True when token i may attend to token j: same example and j <= i (block-diagonal
    causal), so no example sees another; positions restart at 0 for every example, as if it were alone.
    The padding at the end of a row is one more "example", so every query has something to attend to.
    """
    flat = [(sum((x for x, _ in row), []), sum((y for _, y in row), [])) for row in packed_rows]
    inputs, targets = pad_batch(flat, pad_id)
    B, T = inputs.shape
    segment = torch.full((B, T), -1, dtype=torch.long)  # which example each token belongs to; -1 = padding
    positions = torch.zeros((B, T), dtype=torch.long)
    for b, row in enumerate(packed_rows):
        start = 0
        for s, (x, _) in enumerate(row):
            segment[b, start : start + len(x)] = s
            positions[b, start : start + len(x)] = torch.arange(len(x))
            start += len(x)
        positions[b, start:] = torch.arange(T - start)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # [T, T]
    mask = (segment[:, :, None] == segment[:, None, :]) & causal  # [B, T, T]
    return inputs, targets, positions, mask


def truncate(examples, max_length):
    """Cut rows (prompt + completion) longer than max_length from the end of the answer.

    examples: list of (prompt ids, completion ids), completion = answer + [eot]. A cut row loses its eot
    too: it never ends, rather than teaching the model to stop mid-sentence. Returns (examples, number cut).
    """
    out, n_cut = [], 0
    for i, (prompt, completion) in enumerate(examples):
        if len(prompt) >= max_length:
            raise ValueError(f"example {i}: its prompt alone is {len(prompt)} tokens, max_length={max_length} leaves "
                             "no answer to learn; raise max_length or shorten the question")
        if len(prompt) + len(completion) > max_length:
            completion, n_cut = completion[: max_length - len(prompt)], n_cut + 1
        out.append((prompt, completion))
    return out, n_cut
