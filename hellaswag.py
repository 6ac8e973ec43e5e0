"""HellaSwag evaluation: which of 4 endings does the model find most likely after a context?

    python hellaswag.py --download               # fetch data/hellaswag/hellaswag_val.jsonl once
    python hellaswag.py --model gpt2             # GPT-2 124M weights: acc 0.2859, acc_norm 0.2955
    python hellaswag.py --model out-shakespeare  # a train.py out_dir (its ckpt.pt and tokenizer)
    python hellaswag.py --model DIR --limit 500 --batch_size 16 --device cuda
    # examples sharded over 8 GPUs
    torchrun --standalone --nproc_per_node=8 hellaswag.py --model gpt2-xl

Each example is a context and 4 candidate endings, one of them right (`label`). Every ending is
scored by the cross-entropy of its own tokens (" " + ending) after the context tokens; the
context's tokens are not scored. `acc` picks the ending with the lowest summed loss, `acc_norm` the
lowest mean loss per token (summed loss favours short endings; the mean does not). This is the
method of Karpathy's llm.c / build-nanogpt, which gives GPT-2 124M acc 0.2859 and acc_norm 0.2955
on the 10,042 validation examples.

Data: the JSONL files of github.com/rowanz/hellaswag, downloaded once into data/hellaswag/, or
`--data FILE`.
train.py calls `evaluate` during training when hellaswag_interval > 0.
"""
import os
import shutil
import urllib.request

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from configurator import ArgumentParser, quiet_broken_pipe
from files import atomic_write, json_rows, read_lines
from model import load_model
from runtime import autocast_context, pick_device, pick_dtype, setup_ddp, teardown_ddp

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "hellaswag")
URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{split}.jsonl"
SPLITS = ("train", "val", "test")
SCORE_ROWS = 1024  # positions whose logits are computed at once (GPT-2: 206 MB in float32)


# --------------------------------------------------------------------------------------------- data
def download(split="val", data_dir=DATA_DIR):
    """Path of data_dir/hellaswag_{split}.jsonl, downloading it first if it is not there yet."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    path = os.path.join(data_dir, f"hellaswag_{split}.jsonl")
    if os.path.isfile(path):
        return path
    url = URL.format(split=split)
    os.makedirs(data_dir, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            # never a half-written cache file
            atomic_write(path, lambda f: shutil.copyfileobj(response, f))
    except OSError as e:  # URLError, HTTPError and timeouts are all OSErrors
        raise FileNotFoundError(f"could not download {url} ({e}). Offline, fetch that file "
                                f"elsewhere and put it at {path}, or pass --data FILE") from None
    return path


def check_example(ex, where):
    """Validate one HellaSwag object (ctx, endings, label, ...)
    -> the same dict with an int label."""
    if not isinstance(ex, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(ex).__name__}")
    if not isinstance(ex.get("ctx"), str) or not ex["ctx"]:
        raise ValueError(f"{where}: 'ctx' must be a non-empty string")
    endings = ex.get("endings")
    if not (isinstance(endings, list) and len(endings) == 4
            and all(isinstance(e, str) for e in endings)):
        raise ValueError(f"{where}: 'endings' must be a list of 4 strings")
    if "label" not in ex or ex["label"] == "":
        raise ValueError(f"{where}: no 'label' "
                         "(the test split's labels are not public: evaluate val or train)")
    label = ex["label"]
    # the Hugging Face copy stores "0".."3" (isdigit: "²" too)
    if isinstance(label, str) and label.isdecimal():
        label = int(label)
    # type() rather than isinstance: True is not a label
    if type(label) is not int or not 0 <= label <= 3:
        raise ValueError(f"{where}: label {ex['label']!r} must be an integer 0-3")
    return dict(ex, label=label)


def load_examples(path, limit=None):
    """Read a HellaSwag JSONL file -> list of example dicts (the first `limit` ones).
    Errors name the line."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1 (or None for all examples)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HellaSwag file {path} not found: "
                                "`python hellaswag.py --download` fetches the validation split "
                                f"into {DATA_DIR}")
    examples = []
    # a line that is not UTF-8 is named
    lines = ((lineno, text) for lineno, text, _ in read_lines(path))
    for lineno, ex in json_rows(lines, path):
        examples.append(check_example(ex, f"{path}:{lineno}"))
        if len(examples) == limit:  # stop before reading the next line
            break
    if not examples:
        raise ValueError(f"{path}: no examples in this file")
    return examples


# ------------------------------------------------------------------------------------------ scoring
def render(encode, example, block_size):
    """-> 4 (tokens, n) pairs: context + ending token ids, and n, how many of them (at the end)
    are the ending."""
    ctx = encode(example["ctx"])
    if not ctx:
        raise ValueError(f"context {example['ctx'][:40]!r} encodes to no tokens: "
                         "nothing to predict the ending from")
    rendered = []
    for ending in example["endings"]:
        end = encode(" " + ending)  # GPT-2 style: the space belongs to the ending's first token
        if not 1 <= len(end) < block_size:
            raise ValueError(f"ending {ending[:40]!r} is {len(end)} tokens, but the model's "
                             f"block_size={block_size} has room for 1 to {block_size - 1}: "
                             "HellaSwag needs a model with a longer context")
        # a context too long for the model loses its oldest tokens;
        # the ending is always scored in full
        rendered.append(((ctx + end)[-block_size:], len(end)))
    return rendered


@torch.no_grad()
def padded_losses(model, rendered, device):
    """Summed and mean cross-entropy of the endings of N rendered examples:
    two float32 tensors (N, 4).

    All 4N rows go through the model in one forward pass, right-padded to the longest row. Padding
    on the right changes nothing before it (attention is causal, positions start at 0), and it is
    never scored. Logits are computed only where an ending's token is predicted, in chunks: the
    (4N, T, V) logits of every position would be the largest tensor by far (GBs for GPT-2)."""
    rows = [pair for example in rendered for pair in example]
    R, T = len(rows), max(len(tokens) for tokens, _ in rows)
    idx = torch.zeros((R, T), dtype=torch.long)  # (4N, T), padded with token 0
    targets = torch.full((R, T), -100, dtype=torch.long)  # (4N, T): -100 = not scored
    for i, (tokens, n) in enumerate(rows):
        L = len(tokens)
        idx[i, :L] = torch.tensor(tokens)
        targets[i, L - n - 1:L - 1] = idx[i, L - n:L]  # the hidden state at t predicts token t+1
    idx, targets = idx.to(device), targets.to(device)
    scored = targets != -100  # (4N, T)
    hidden = model.hidden_states(idx)[scored]  # (M, C): the M scored positions
    chunks = zip(hidden.split(SCORE_ROWS), targets[scored].split(SCORE_ROWS))
    # their logits, SCORE_ROWS positions at a time: memory bounded whatever the batch size
    losses = torch.cat([F.cross_entropy(model.lm_head(h).float(), t, reduction="none")
                        for h, t in chunks])  # (M,)
    row = scored.nonzero()[:, 0]  # (M,): the row of each scored position
    sum_losses = torch.zeros(R, device=losses.device).index_add_(0, row, losses)  # (4N,)
    mean_losses = sum_losses / torch.tensor([n for _, n in rows], device=sum_losses.device)
    return sum_losses.view(-1, 4), mean_losses.view(-1, 4)


def ending_losses(model, encode, examples, device):
    """padded_losses of examples, tokenized with encode -> (sum_losses, mean_losses),
    each (N, 4)."""
    return padded_losses(model, [render(encode, ex, model.config.block_size) for ex in examples],
                         device)


def score_example(model, encode, example, device):
    """-> (sum_losses, mean_losses): two lists of 4 floats, one per ending of this example."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        sum_losses, mean_losses = ending_losses(model, encode, [check_example(example, "example")],
                                                device)
    finally:
        model.train(was_training)
    return sum_losses[0].tolist(), mean_losses[0].tolist()


def unwrap(model):
    """The plain GPT inside DDP and/or torch.compile wrappers. Evaluation runs it eagerly: its
    padded batches change length every call, which would make a compiled model recompile, and
    DDP's hooks are for training."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def evaluate(model, encode, examples, device, batch_size=8, rank=0, world_size=1, progress=False):
    """acc and acc_norm of the model over examples -> dict(acc, acc_norm, count).

    Under DDP every rank passes the same examples and its rank: it scores examples[rank::world_size]
    and the counts are summed over ranks, so each example is counted exactly once. All ranks get the
    same result."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    if world_size > 1 and not dist.is_initialized():
        raise ValueError(f"world_size={world_size} but torch.distributed is not initialized: "
                         "launch with torchrun")
    if not examples:
        raise ValueError("no examples to evaluate")
    model = unwrap(model)
    # every rank tokenizes every example: a bad one stops all ranks alike,
    # before any model time is spent
    rendered = []
    for i, ex in enumerate(examples):
        try:
            rendered.append(render(encode, ex, model.config.block_size))
        except ValueError as e:
            raise ValueError(f"HellaSwag example {i} (ind {ex.get('ind', '?')}): {e}") from None
    rendered, labels = (rendered[rank::world_size],
                        [ex["label"] for ex in examples[rank::world_size]])
    was_training = model.training
    model.eval()  # no dropout while scoring
    # right by sum, right by mean, examples seen
    counts = torch.zeros(3, dtype=torch.long, device=device)
    desc = "hellaswag" if world_size == 1 else f"hellaswag (rank {rank}'s shard)"
    bar = tqdm(total=len(labels), desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        for i in range(0, len(labels), batch_size):
            # (B, 4) each
            sum_losses, mean_losses = padded_losses(model, rendered[i:i + batch_size], device)
            label = torch.tensor(labels[i:i + batch_size], device=sum_losses.device)  # (B,)
            counts[0] += (sum_losses.argmin(dim=1) == label).sum()
            counts[1] += (mean_losses.argmin(dim=1) == label).sum()
            counts[2] += len(label)
            if progress:  # .item() waits for the GPU: only when the bar is shown
                bar.set_postfix(acc_norm=f"{counts[1].item() / counts[2].item():.4f}",
                                refresh=False)
            bar.update(len(label))
    finally:
        bar.close()
        model.train(was_training)
    if world_size > 1:
        dist.all_reduce(counts)  # SUM over ranks
    right, right_norm, count = counts.tolist()
    return dict(acc=right / count, acc_norm=right_norm / count, count=count)


# ---------------------------------------------------------------------------------------------- CLI
def run(args):
    if args.download:
        print(download(args.split))
        return
    ddp, rank, local_rank, world_size, device = setup_ddp(pick_device(args.device))
    try:
        dtype = pick_dtype(device, args.dtype)
        path = args.data
        if path is None:
            # one download per machine; the other ranks wait for it, then find it cached
            if local_rank == 0:
                download(args.split)
            if ddp:
                dist.barrier()
            path = download(args.split)
        examples = load_examples(path, args.limit)
        # a train.py out_dir, GPT-2 name or HF dir
        model, tok = load_model(args.model, args.model, device)
        with autocast_context(device, dtype):
            result = evaluate(model, tok.encode_ordinary, examples, device, args.batch_size, rank,
                              world_size, progress=rank == 0)
        if rank == 0:
            print(f"{args.model} on {path}: {result['count']} examples, "
                  f"acc {result['acc']:.4f}, acc_norm {result['acc_norm']:.4f}")
    finally:
        if ddp:
            teardown_ddp()


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2",
                        help="gpt2 | gpt2-medium | gpt2-large | gpt2-xl | Hugging Face DIR | "
                             "train.py out_dir")
    parser.add_argument("--split", default="val", choices=SPLITS,
                        help="downloaded into data/hellaswag/")
    parser.add_argument("--data", default=None,
                        help="a local HellaSwag JSONL file instead of --split")
    parser.add_argument("--download", action="store_true",
                        help="only download the --split file, then exit")
    parser.add_argument("--limit", type=int, default=None, help="only the first N examples")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="examples per forward pass (4 rows each)")
    parser.add_argument("--device", default=None,
                        help="cpu | cuda | mps; default: the best one here")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="autocast dtype on CUDA (the reference figures are float32)")
    args = parser.parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    with quiet_broken_pipe():
        main()
