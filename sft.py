"""Supervised fine-tuning (SFT) of a GPT on question/answer pairs.

    python sft.py config/sft_demo_cpu.py                 # the demo: Korean/English programming Q/A
    python sft.py config/sft_demo_cpu.py --packing=True  # the same, examples packed into full rows
    python sft.py config/sft_demo_cpu.py --show_example=3   # what the loss sees, then exit

Each example is one row: prompt + answer + <|endoftext|>, where
    prompt = "<|question|>\\n{question}\\n<|answer|>\\n"
The model reads the whole row but is only taught the answer and the end-of-text token: every
target inside the prompt is -100 (cross-entropy's ignore_index), so it learns to answer, not to
ask, and to stop.
"""
import json
import os
import sys
import time
from contextlib import nullcontext
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule

import bpe
from bpe import TEMPLATES, prompt_ids
from checkpoints import load_checkpoint
from configurator import apply_overrides, quiet_broken_pipe
from files import ANSWER, QUESTION, atomic_copy, atomic_write, qa_prompt, read_qa_file
from model import GPT, Documents, GPTConfig, decode_generated, load_pretrained, pad_vocab_size
from runtime import (JsonlLogger, all_ranks, autocast_context, claim_out_dir, duration, is_master,
                     pick_device, pick_dtype, plot_log, print0, setup_ddp, start_wandb,
                     teardown_ddp)
from lora import count_params
from token_lengths import recommend_length
from train import (SCALE_CONFIG, check_ranges, check_scale_options, get_lr, given_keys,
                   optimizer_step, prepare_model, restore_state, resumed_config, save_run, set_lr,
                   stop_if_diverged)

IGNORE = -100  # F.cross_entropy's ignore_index: targets we do not learn

DEFAULT_CONFIG = dict(
    # where to start and where to write
    out_dir="out-sft",
    # scratch | resume (out_dir/ckpt.pt, which the result replaces) | gpt2* |
    # DIR (a train.py out_dir or a HF GPT-2 dir)
    init_from="scratch",
    overwrite=False,  # a fresh run may replace out_dir's ckpt.pt, log.jsonl, answers.json
    tokenizer="gpt2",  # scratch only: gpt2, a bpe.py model dir/file, or bpe:N (train N tokens here)
    # data
    train_file="data/sft/train.txt",  # <|question|>/<|answer|> blocks, or .jsonl
    val_file="",  # held-out pairs; "" holds out val_fraction of train_file
    val_fraction=0.1,
    question_field="question",  # JSONL field names
    answer_field="answer",
    strict=False,  # a block or row without an answer is an error, not a skipped, counted warning
    special_tokens=False,  # <|question|>/<|answer|> as real tokens (new embedding rows), not text
    template="qa",  # qa: <|question|>/<|answer|> rows; chat: the model's chat template (ChatML)
    max_length=0,  # tokens/row (prompt+answer+eot); 0: token_lengths.recommend_length (nothing cut)
    packing=False,  # rows of block_size holding several examples, block-diagonal causal mask
    show_example=-1,  # >= 0: print that tokenized example with its learned tokens marked, then exit
    # model, when init_from=scratch
    n_layer=4,
    n_head=4,
    n_embd=128,
    block_size=256,
    bias=True,
    dropout=0.0,  # every init_from, not only scratch: replaces a checkpoint's/GPT-2's own dropout
    # optimization
    epochs=3,
    batch_size=8,  # examples per step (packing: packed rows per step)
    learning_rate=5e-5,
    min_lr=5e-6,
    warmup_iters=10,
    decay_lr=True,
    weight_decay=0.0,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,
    log_interval=10,
    seed=1337,
    save_interval=0,  # steps between checkpoints inside an epoch (0: at the end of each epoch)
    keep_best=False,  # also keep the checkpoint with the lowest held-out loss in out_dir/best/
    # before/after answers
    eval_train=0,  # training questions answered for the exact-match rate (0: all of them)
    eval_heldout=0,  # held-out questions answered (0: all; the held-out loss always uses all)
    show_train=3,  # how many of those to print, spread over the file (0: all)
    free_prompts=["What is Python?", "파이썬이란 무엇인가요?"],  # questions from neither file
    gen_length=0,  # new tokens per answer (token_lengths.py --write sets it); 0: longest answer
    # system
    device=None,  # None: cuda, then mps, then cpu
    dtype=None,  # None: bfloat16 on CUDA (float16 + grad scaler without bf16), float32 elsewhere
    backend=None,  # DDP backend; None: nccl on CUDA, gloo otherwise
    ddp_timeout=1800,  # seconds a process waits for the others (a save, a stuck rank), then fails
    compile=False,
    **SCALE_CONFIG,  # fsdp, activation_checkpointing, lora_*, wandb_*: as in train.py
    num_threads=0,  # CPU threads for torch; 0: torch's default (tiny models, busy machine: try 1)
)


# --------------------------------------------------------------------------- rows, batches, packing
def make_row(prompt, completion):
    """(prompt ids, completion ids) -> (inputs, targets),
    two lists of len(prompt) + len(completion) - 1.

    completion is answer + [eot] (or an answer cut by max_length, without eot). inputs are the
    row minus its last token; targets[i] = row[i + 1], with every target that is still a prompt
    token ignored.
    """
    row = prompt + completion
    return row[:-1], [IGNORE] * (len(prompt) - 1) + completion


def pad_batch(rows, pad_id):
    """rows: list of (inputs, targets) -> inputs, targets LongTensor [B, T],
    T = the longest row of THIS batch.

    Padding goes on the right: with a causal mask no real token can see it, and its targets
    are ignored.
    """
    T = max(len(x) for x, _ in rows)
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for b, (x, y) in enumerate(rows):
        inputs[b, : len(x)] = torch.tensor(x, dtype=torch.long)
        targets[b, : len(y)] = torch.tensor(y, dtype=torch.long)
    return inputs, targets


def sft_batch(examples, eot_id, pad_id):
    """examples: list of (prompt ids, answer ids) -> inputs, targets [B, T];
    each row is prompt + answer + [eot]."""
    return pad_batch([make_row(p, a + [eot_id]) for p, a in examples], pad_id)


def first_fit(lengths, block_size):
    """First fit: each example goes into the first row that still has room for it,
    else into a new row.

    lengths: input tokens per example (each <= block_size). Returns a list of rows, each a list
    of indices. Given the examples in random order, rows come out nearly full and different in
    every epoch. The readable definition: it reads every open row per example, O(examples x rows);
    pack() gives the same rows in O(examples x log(examples)).
    """
    rows, room = [], []
    for i, n in enumerate(lengths):
        r = next((r for r, free in enumerate(room) if free >= n), len(rows))
        if r == len(rows):
            rows.append([])
            room.append(block_size)
        rows[r].append(i)
        room[r] -= n
    return rows


def pack(lengths, block_size):
    """The rows of first_fit(lengths, block_size), finding each example's row in O(log rows).

    A tournament tree over the rows' free space: leaf r (at size + r) holds row r's room, every
    node the most room among the leaves below it, so the first row with room >= n is one walk
    down, always left when the left half has room. There are as many leaves as examples, all
    starting empty (block_size of room): the first leaf not used yet opens the next row.
    """
    size = 1 << max(len(lengths) - 1, 0).bit_length()  # leaves: a power of 2 >= examples
    room = [block_size] * (2 * size)  # node i has children 2i and 2i + 1; the root is 1
    rows = []
    for i, n in enumerate(lengths):
        node = 1
        while node < size:
            node = 2 * node if room[2 * node] >= n else 2 * node + 1
        if node - size == len(rows):
            rows.append([])
        rows[node - size].append(i)
        room[node] -= n
        while node > 1:  # up: each node the most room below it, until one stays the same
            node //= 2
            most = max(room[2 * node], room[2 * node + 1])
            if room[node] == most:
                break
            room[node] = most
    return rows


def packed_batch(packed_rows, pad_id):
    """packed_rows: list of rows, each a list of (inputs, targets)
    -> inputs, targets, positions [B, T], documents (a model.Documents).

    Every example attends only to itself, causally, and its positions restart at 0, as if it were
    alone; documents.mask() is that block-diagonal causal mask, which the model never builds
    (Documents.attend). The padding at the end of a row is one more "example", so every query has
    something to attend to.
    """
    flat = [(sum((x for x, _ in row), []), sum((y for _, y in row), [])) for row in packed_rows]
    inputs, targets = pad_batch(flat, pad_id)
    documents = Documents([[len(x) for x, _ in row] for row in packed_rows], inputs.size(1))
    return inputs, targets, documents.positions, documents


def truncate(examples, max_length):
    """Cut rows (prompt + completion) longer than max_length from the end of the answer.

    examples: list of (prompt ids, completion ids), completion = answer + [eot]. A cut row loses
    its eot too: it never ends, rather than teaching the model to stop mid-sentence. Returns
    (examples, number cut).
    """
    out, n_cut = [], 0
    for i, (prompt, completion) in enumerate(examples):
        if len(prompt) >= max_length:
            raise ValueError(f"example {i}: its prompt alone is {len(prompt)} tokens, "
                             f"max_length={max_length} leaves no answer to learn; "
                             "raise max_length or shorten the question")
        if len(prompt) + len(completion) > max_length:
            completion, n_cut = completion[: max_length - len(prompt)], n_cut + 1
        out.append((prompt, completion))
    return out, n_cut


# ----------------------------------------------------------------------------- tokenizer and model
def encode_pairs(tok, pairs, template="qa"):
    """(question, answer) strings -> (prompt ids, answer ids + [eot]); eot teaches the model to
    stop. The prompt is the format's markers around the question (bpe.prompt_ids); the question
    and answer are always text, so an "<|endoftext|>" inside them is not the control token."""
    return [(prompt_ids(tok, q, template), tok.encode_ordinary(a) + [tok.eot_id])
            for q, a in pairs]


def base_tokenizer(spec, train_text, special_tokens):
    """A bpe.Tokenizer for a scratch model: "gpt2", a bpe.py model dir/file, or "bpe:N"
    (train N tokens here)."""
    if spec.startswith("bpe:"):
        if not spec[4:].isdigit():
            raise ValueError(f"tokenizer={spec!r}: write bpe:N with N the vocabulary size, "
                             "e.g. bpe:1024")
        specials = ["<|endoftext|>"] + ([QUESTION, ANSWER] if special_tokens else [])
        return bpe.train_bpe(train_text, int(spec[4:]), special_tokens=specials)
    return bpe.load_tokenizer(spec)


def add_marker_tokens(tok):
    """The same tokenizer with <|question|> and <|answer|> as special tokens
    (new ids after the last one)."""
    specials = dict(tok.special_tokens)
    for marker in (QUESTION, ANSWER):
        # n_vocab: max id + 1
        specials.setdefault(marker, max([tok.n_vocab - 1, *specials.values()]) + 1)
    return bpe.Tokenizer(tok.merges, tok.vocab, specials, tok.pattern)


def init_new_rows(model, new_ids, n_old):
    """Give the embedding rows of newly added tokens the mean of the first n_old rows, growing the
    matrix if needed.

    A mean row is a neutral start: its logit is close to an average token's, so the new
    token neither dominates nor vanishes from the softmax, and its input embedding looks like
    ordinary text.
    """
    need = max(new_ids) + 1
    heads = [model.transformer.wte] + ([] if model.config.tie_embeddings else [model.lm_head])
    for layer in heads:
        W = layer.weight.data  # (V, C)
        if need > W.size(0):
            W = torch.cat([W, W.new_zeros(need - W.size(0), W.size(1))])
            layer.weight = torch.nn.Parameter(W)
            setattr(layer,
                    "num_embeddings" if isinstance(layer, torch.nn.Embedding) else "out_features",
                    need)
        W[new_ids] = W[:n_old].mean(dim=0)
    if model.config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    model.config.vocab_size = model.transformer.wte.weight.size(0)


# -------------------------------------------------------------------- greedy answers and evaluation
@torch.no_grad()
def greedy_answers(model, tok, questions, max_new_tokens, device, template="qa"):
    """Greedy answer text for each question, up to eot. Prompts of equal token length share one
    generate call (no padding needed, so each answer is exactly what the model would say to that
    prompt alone)."""
    model.eval()
    prompts = [prompt_ids(tok, q, template) for q in questions]
    answers = [None] * len(prompts)
    by_length = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    for n, idxs in by_length.items():
        # inside the context: no sliding window
        new = max(0, min(max_new_tokens, model.config.block_size - n))
        x = torch.tensor([prompts[i] for i in idxs], dtype=torch.long, device=device)  # (G, n)
        # (G, <= new)
        out = model.generate(x, new, temperature=0.0, eos_id=tok.eot_id)[:, n:].tolist()
        for i, ids in zip(idxs, out):
            ids = ids[: ids.index(tok.eot_id)] if tok.eot_id in ids else ids
            # an untrained model may pick a padding row
            answers[i] = decode_generated(tok, ids).strip()
    return answers


@torch.no_grad()
def mean_loss(model, examples, batch_size, pad_id, device, autocast):
    """Token-weighted mean cross-entropy over the learned tokens of all examples
    (not a mean of batch means)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        x, y = pad_batch([make_row(p, c) for p, c in examples[i : i + batch_size]], pad_id)
        with autocast:
            _, loss = model(x.to(device), y.to(device))
        n = int((y != IGNORE).sum())
        total, count = total + loss.item() * n, count + n
    return total / max(count, 1)


def show_example(tok, examples, question, i):
    """Print example i token by token, marking the tokens the loss learns
    (the targets that are not -100)."""
    prompt, completion = examples[i]
    inputs, targets = make_row(prompt, completion)

    def piece(t):  # a token's text, or its bytes when it holds only part of a UTF-8 character
        b = tok.decode_bytes([t])
        try:
            return repr(b.decode("utf-8"))
        except UnicodeDecodeError:
            return repr(b)
    eot = tok.special_tokens["<|endoftext|>"]
    print(f"example {i}: question {question!r}")
    print(f"{len(prompt)} prompt tokens (masked: target -100) + {len(completion)} learned tokens "
          f"(answer{' + eot' if completion[-1] == eot else ', cut by max_length'})\n")
    print(f"{'pos':>4} {'input':>6}  {'input token':<22} {'target':>6}  target token")
    for t, (x, y) in enumerate(zip(inputs, targets)):
        learned = f"{piece(y)}   <- learned" if y != IGNORE else "(masked)"
        print(f"{t:>4} {x:>6}  {piece(x):<22} {y:>6}  {learned}")
    print(f"\nthe loss sees only: {tok.decode([y for y in targets if y != IGNORE])!r}")


def print_side_by_side(title, rows, width=150):
    """Question, reference, before and after, one above the other
    (cut to width; answers.json has them whole)."""
    cut = lambda s: s if len(s) <= width else s[:width] + "..."
    print(f"\n=== {title}")
    for r in rows:
        print(f"Q: {r['question']}")
        if "reference" in r:
            print(f"   reference: {cut(r['reference'])}")
        print(f"   before:    {cut(r['before'])}")
        print(f"   after:     {cut(r['after'])}")


# ----------------------------------------------------------------------------- the run
def load_start(cfg, train_text, device):
    """-> (model on device, bpe.Tokenizer, the checkpoint to resume or None) to fine-tune, per
    init_from; markers added if special_tokens."""
    init = cfg["init_from"]
    ckpt_dir = cfg["out_dir"] if init == "resume" else init
    if init == "scratch":
        tok = base_tokenizer(cfg["tokenizer"], train_text, cfg["special_tokens"])
        tok = add_marker_tokens(tok) if cfg["special_tokens"] else tok
        model = GPT(GPTConfig(block_size=cfg["block_size"], vocab_size=pad_vocab_size(tok.n_vocab),
                              n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                              bias=cfg["bias"], dropout=cfg["dropout"]))
        return model.to(device), tok, None
    path = os.path.join(ckpt_dir, "ckpt.pt")
    if init == "resume" and not os.path.isfile(path):
        raise FileNotFoundError(f"init_from=resume: no checkpoint at {path}; point --out_dir at "
                                "the run to go on from, or start from scratch, gpt2 or a directory "
                                "(--init_from=...)")
    ckpt = None
    if os.path.isfile(path):
        ckpt = load_checkpoint(path)
        spec = ckpt.get("tokenizer", {})
        if spec.get("kind") not in ("gpt2", "bpe"):
            raise ValueError(f"{path} has tokenizer {spec.get('kind')!r}: sft needs a BPE "
                             "tokenizer with <|endoftext|> (gpt2 or bpe), so the model can "
                             "learn to stop")
        tok = bpe.tokenizer_from_spec(spec)
        # fine-tuning picks its own, as for GPT-2 below
        ckpt["model_args"]["dropout"] = cfg["dropout"]
        model = GPT.from_checkpoint(ckpt)
    else:  # GPT-2, SmolLM2, a Hugging Face directory, a .gguf file, a hub id
        model, tok = load_pretrained(init, override_args={"dropout": cfg["dropout"]})
    if model.config.vocab_size < tok.n_vocab:
        raise ValueError(f"the model's vocab_size={model.config.vocab_size} < its tokenizer's "
                         f"{tok.n_vocab}")
    if cfg["special_tokens"] and not {QUESTION, ANSWER} <= set(tok.special_tokens):
        n_old, tok = tok.n_vocab, add_marker_tokens(tok)
        init_new_rows(model, [tok.special_tokens[QUESTION], tok.special_tokens[ANSWER]], n_old)
    return model.to(device), tok, ckpt if init == "resume" else None


def epoch_plan(lengths, batch_size, packing, block_size, generator):
    """One epoch's batches: each batch a list of rows, each row a list of example indices
    (one without packing)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if packing:
        rows = [[order[j] for j in row] for row in pack([lengths[i] for i in order], block_size)]
    else:
        rows = [[i] for i in order]
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def rank_share(plans, rank, world_size):
    """This rank's batches of each epoch's plan: every world_size-th one. A remainder that cannot
    go to all ranks is dropped, so that all ranks take the same number of steps (DDP's all-reduce
    waits for every rank)."""
    shares = [plan[rank::world_size][: len(plan) // world_size] for plan in plans]
    if not all(shares):  # an epoch without steps would log 0/0 as its loss
        raise ValueError(f"an epoch of {min(map(len, plans))} batch(es) gives no step to each of "
                         f"{world_size} process(es); lower batch_size or add data")
    return shares


def spread(n, k):
    """k indices spread evenly over range(n) (all of them when k is 0 or >= n)."""
    return list(range(n)) if k <= 0 or k >= n else [i * n // k for i in range(k)]


def run(cfg):
    """Fine-tune per cfg (DEFAULT_CONFIG with overrides);
    returns the answers.json dict on rank 0."""
    device = pick_device(cfg["device"])
    check_scale_options(SimpleNamespace(**cfg))
    ddp, rank, local_rank, world_size, device = setup_ddp(device, cfg["backend"],
                                                          cfg["ddp_timeout"])
    try:  # out_dir is held for the run (--show_example writes nothing)
        with claim_out_dir(cfg["out_dir"], cfg["init_from"], cfg["overwrite"]) \
                if cfg["show_example"] < 0 else nullcontext():
            return fine_tune(cfg, ddp, rank, local_rank, world_size, device)
    finally:
        teardown_ddp()


LOWEST = dict(epochs=1, batch_size=1, log_interval=1, learning_rate=0, min_lr=0, warmup_iters=0,
              weight_decay=0, grad_clip=0, max_length=0, gen_length=0, save_interval=0,
              eval_train=0, eval_heldout=0, show_train=0, seed=0, ddp_timeout=1, n_layer=1,
              n_head=1, n_embd=1, block_size=1)  # each setting's lowest value


def check_config(cfg):
    if cfg["template"] not in TEMPLATES:
        raise ValueError(f"template={cfg['template']!r}: expected one of {', '.join(TEMPLATES)}")
    if cfg["template"] == "chat" and cfg["special_tokens"]:
        raise ValueError("special_tokens=True adds <|question|>/<|answer|>, which template=chat "
                         "does not use: drop one of them")
    check_ranges(SimpleNamespace(**cfg), LOWEST)
    if not 0 <= cfg["val_fraction"] < 1:
        raise ValueError(f"val_fraction={cfg['val_fraction']} must be in [0, 1)")


def read_data(cfg):
    """-> (training pairs, held-out pairs): val_file, or val_fraction of train_file held out."""
    qf, af = cfg["question_field"], cfg["answer_field"]
    pairs, problems = read_qa_file(cfg["train_file"], cfg["strict"], qf, af)
    if cfg["val_file"]:
        val_pairs, val_problems = read_qa_file(cfg["val_file"], cfg["strict"], qf, af)
        problems += val_problems
    else:
        g = torch.Generator().manual_seed(cfg["seed"])
        perm = torch.randperm(len(pairs), generator=g).tolist()
        n_val = round(len(pairs) * cfg["val_fraction"])
        val_pairs = [pairs[i] for i in sorted(perm[:n_val])]
        pairs = [pairs[i] for i in sorted(perm[n_val:])]
    for p in problems[:10]:
        print0(f"skipped: {p}")
    if problems:
        print0(f"skipped {len(problems)} malformed example(s) in all "
               "(--strict=True makes this an error)")
    if not pairs:
        raise ValueError(f"no question/answer pairs to train on in {cfg['train_file']}")
    return pairs, val_pairs


def tokenize(cfg, tok, pairs, val_pairs, block_size):
    """-> (examples, held-out examples, max_length):
    (prompt ids, answer ids + eot), cut to max_length."""
    if tok.eot_id is None:  # a bpe.py model trained without it: answers would have no end to learn
        where = "tokenizer" if cfg["init_from"] == "scratch" else "init_from"
        raise ValueError(f"{where}={cfg[where]!r}: the tokenizer has no <|endoftext|> token, "
                         "which ends every answer so that the model learns to stop; use gpt2, "
                         "bpe:N, or a bpe.py model trained with <|endoftext|> as a special token")
    examples = encode_pairs(tok, pairs, cfg["template"])
    val_examples = encode_pairs(tok, val_pairs, cfg["template"])
    lengths = [len(p) + len(c) for p, c in examples]
    max_length = cfg["max_length"] or min(recommend_length(lengths), block_size + 1)
    if max_length > block_size + 1:
        raise ValueError(f"max_length={max_length} is longer than the model's "
                         f"block_size={block_size} + 1 (a row of max_length tokens feeds "
                         f"max_length - 1 inputs); use at most {block_size + 1}")
    examples, n_cut = truncate(examples, max_length)
    val_examples, n_cut_val = truncate(val_examples, max_length)
    how = "set" if cfg["max_length"] else "recommended by token_lengths.py"
    print0(f"{len(examples)} training and {len(val_examples)} held-out pairs; "
           f"max_length={max_length} tokens ({how}); truncated {n_cut} training and "
           f"{n_cut_val} held-out example(s) from the end of the answer")
    return examples, val_examples, max_length


def train_step(model, optimizer, scaler, batch, rows, cfg, pad_id, device, autocast):
    """One optimizer step on one batch
    -> (mean loss over its learned tokens, their count, positions)."""
    if cfg["packing"]:
        x, y, pos, docs = packed_batch([[rows[i] for i in row] for row in batch], pad_id)
        pos, docs = pos.to(device), docs.to(device)
    else:
        (x, y), pos, docs = pad_batch([rows[row[0]] for row in batch], pad_id), None, None
    x, y = x.to(device), y.to(device)
    with autocast:
        # mean over this batch's learned tokens
        _, loss = model(x, y, attn_mask=docs, positions=pos)
    scaler.scale(loss).backward()
    norm = optimizer_step(optimizer, scaler, model.parameters(), cfg["grad_clip"])
    return loss, norm, (y != IGNORE).sum(), x.numel()


def train_epochs(cfg, model, tok, examples, val_examples, ddp, local_rank, world_size, device,
                 dtype, ckpt, before):
    """Every epoch: its steps, then the held-out loss, a log.jsonl row and ckpt.pt (also every
    save_interval steps). ckpt: a checkpoint to continue exactly where it stopped, else None.
    -> (the trained model, the epoch rows, {steps, train_time_s, tokens_seen, positions_seen})."""
    rows = [make_row(p, c) for p, c in examples]  # (inputs, targets) per example
    lengths = [len(x) for x, _ in rows]
    g = torch.Generator().manual_seed(cfg["seed"])  # the same plans on every rank and on resume
    plans = [epoch_plan(lengths, cfg["batch_size"], cfg["packing"], model.config.block_size, g)
             for _ in range(cfg["epochs"])]
    rank = dist.get_rank() if ddp else 0
    plans = rank_share(plans, rank, world_size)
    raw_model = model
    model, optimizer, scaler = prepare_model(raw_model, SimpleNamespace(**cfg), device, dtype, ddp,
                                             local_rank)
    # pad_id: any valid id; padding is never attended to and its targets are ignored
    run = SimpleNamespace(
        cfg=cfg, model=model, raw_model=raw_model, optimizer=optimizer, scaler=scaler, tok=tok,
        rows=rows, lengths=lengths, val_examples=val_examples, pad_id=tok.eot_id, device=device,
        autocast=autocast_context(device, dtype), world_size=world_size, before=before,
        total_iters=sum(len(plan) for plan in plans))
    p = start_progress(run, ckpt, rank)
    wandb_run = start_wandb(cfg["wandb_project"], cfg["wandb_run_name"], cfg) \
        if cfg["wandb_log"] else None
    # a fresh log, or the resumed run's rows up to its checkpoint (not those logged after it)
    run.logger = JsonlLogger(os.path.join(cfg["out_dir"], "log.jsonl"),
                             p.it + 1 if ckpt else 0, wandb_run)
    print0(f"training {raw_model.get_num_params() / 1e6:.2f}M parameters for {cfg['epochs']} "
           f"epochs, {run.total_iters} steps ({'packing' if cfg['packing'] else 'padding'}), "
           f"on {device}" + (f"; resuming after step {p.it}" if ckpt else ""))
    done = 0  # steps before this epoch
    for epoch, plan in enumerate(plans):
        if p.it < done + len(plan):  # an epoch a resumed run has not finished
            run_epoch(run, p, epoch, plan[p.it - done:] if p.it > done else plan)
        done += len(plan)
    if isinstance(raw_model, FSDPModule) and is_master():  # answers come from one whole model
        raw_model = GPT(raw_model.config).to(device)
        raw_model.load_state_dict(p.model_state)
    return raw_model, p.epoch_rows, p.stats


def start_progress(run, ckpt, rank):
    """-> the run's progress (step, best held-out loss, epoch rows, stats, this epoch's sums): at
    zero, or a checkpoint's, with the optimizer, loss scale and RNG continued from it too."""
    trainable, total = count_params(run.raw_model)
    p = SimpleNamespace(it=0, best_val=float("inf"), epoch_rows=[], model_state=None,
                        stats={"steps": run.total_iters, "train_time_s": 0.0, "tokens_seen": 0,
                               "positions_seen": 0, "trainable_params": trainable,
                               "total_params": total},
                        loss_sum=torch.zeros(2, device=run.device), counts=[0, 0])
    if ckpt is None:
        return p
    saved = ckpt.get("sft")
    if saved is None:  # an older sft.py's checkpoint: its weights, without where it stopped
        raise ValueError("init_from=resume: the checkpoint has no sft progress (it was written "
                         "by train.py or an older sft.py); fine-tune from it with "
                         f"--init_from={run.cfg['out_dir']} --out_dir=NEW_DIR instead")
    if ckpt["iter_num"] >= run.total_iters:
        raise ValueError(f"init_from=resume: the run finished its {run.total_iters} steps "
                         f"({run.cfg['epochs']} epochs); give --epochs=N with N > "
                         f"{run.cfg['epochs']} to train on")
    restore_state(ckpt, run.raw_model, run.optimizer, run.scaler, rank, run.world_size, run.device)
    # this rank's sums of the unfinished epoch; resumed on another number of ranks, the epoch's
    # training loss starts again from the resumed step
    sums = saved["epoch_sums"]
    sums = sums[rank] if len(sums) == run.world_size else [[0, 0], [0, 0]]
    p.it, p.best_val, p.epoch_rows = ckpt["iter_num"], ckpt["best_val_loss"], saved["epoch_rows"]
    p.stats.update(saved["stats"], steps=run.total_iters)
    p.loss_sum, p.counts = torch.tensor(sums[0], device=run.device), sums[1]
    return p


def run_epoch(run, p, epoch, plan):
    """Train on plan (this epoch's batches, or the rest of them on resume), then end the epoch:
    the held-out loss, its log.jsonl row and ckpt.pt."""
    cfg = run.cfg
    run.model.train()
    log_time, log_tokens = 0.0, 0  # seconds spent in training steps (not in evaluation)
    for step, batch in enumerate(plan):
        t0 = time.time()
        lr = get_lr(p.it, cfg["learning_rate"], cfg["min_lr"], cfg["warmup_iters"],
                    run.total_iters) if cfg["decay_lr"] else cfg["learning_rate"]
        set_lr(run.optimizer, lr)
        loss, norm, n_learned, n_positions = train_step(run.model, run.optimizer, run.scaler,
                                                        batch, run.rows, cfg, run.pad_id,
                                                        run.device, run.autocast)
        n_real = sum(run.lengths[i] for row in batch for i in row)  # no padding
        # sum of loss * learned tokens, learned tokens; input tokens without and with padding
        p.loss_sum += torch.stack([loss.detach().float() * n_learned, n_learned.float()])
        p.counts = [p.counts[0] + n_real, p.counts[1] + n_positions]
        dt, p.it = time.time() - t0, p.it + 1
        p.stats["train_time_s"] += dt
        log_time, log_tokens = log_time + dt, log_tokens + n_real
        if p.it % cfg["log_interval"] == 0 and is_master():
            log_step(run, p, loss, norm, lr, log_time, log_tokens)
            log_time, log_tokens = 0.0, 0
        if cfg["save_interval"] and p.it % cfg["save_interval"] == 0 and step < len(plan) - 1:
            save_sft(run, p)  # mid-epoch (the epoch's end saves anyway)
    row = end_epoch(run, p, epoch)
    improved = row.get("val_loss", float("inf")) < p.best_val
    p.best_val = min(p.best_val, row.get("val_loss", p.best_val))
    p.epoch_rows.append(row)
    run.logger.log(row)
    stop_if_diverged(p.it, {k: row[k] for k in ("train_loss", "val_loss") if k in row},
                     cfg["learning_rate"], run.raw_model)
    p.loss_sum, p.counts = torch.zeros(2, device=run.device), [0, 0]  # the next epoch's sums
    p.model_state = save_sft(run, p)
    if improved and cfg["keep_best"] and is_master():  # ckpt.pt goes on; best/ keeps the best
        best = os.path.join(cfg["out_dir"], "best", "ckpt.pt")
        atomic_copy(os.path.join(cfg["out_dir"], "ckpt.pt"), best)
        print0(f"held-out loss {p.best_val:.4f} is the lowest so far: copied ckpt.pt to {best}")


def log_step(run, p, loss, norm, lr, log_time, log_tokens):
    """Print and log one training step's row (rank 0): tokens/s is this rank's times the ranks,
    the ETA comes from the mean step time so far."""
    cfg = run.cfg
    ms = log_time * 1000 / cfg["log_interval"]
    tps = log_tokens * run.world_size / log_time
    eta = p.stats["train_time_s"] / p.it * (run.total_iters - p.it)
    print0(f"iter {p.it}/{run.total_iters}: loss {loss.item():.4f}, grad_norm {norm.item():.4f}, "
           f"lr {lr:.2e}, {ms:.0f} ms/iter, {tps:.0f} tokens/s, eta {duration(eta)}")
    run.logger.log({"iter": p.it, "loss": loss.item(), "grad_norm": norm.item(), "lr": lr,
                    "dt_ms": ms, "tokens_per_sec": tps})


def save_sft(run, p):
    """Write out_dir/ckpt.pt (merged LoRA weights, gathered FSDP shards) on rank 0, with where the
    run stands (step, epoch rows, this epoch's sums per rank, the answers before training), so
    that init_from=resume continues it exactly -> the model's state_dict there (else None)."""
    sums = all_ranks([p.loss_sum.tolist(), p.counts])
    progress = {"epoch_rows": p.epoch_rows, "stats": p.stats, "epoch_sums": sums,
                "answers_before": run.before}
    return save_run(os.path.join(run.cfg["out_dir"], "ckpt.pt"), dict(run.cfg), run.raw_model,
                    run.optimizer, run.scaler, bpe.tokenizer_spec(run.tok), p.it, p.best_val,
                    run.device, sft=progress)


def end_epoch(run, p, epoch):
    """The epoch's row: token-weighted mean training loss over all ranks,
    held-out loss, tokens seen."""
    loss_sum, counts = p.loss_sum.clone(), p.counts
    if dist.is_initialized():
        counts = torch.tensor(counts, device=run.device)
        for t in (loss_sum, counts):
            dist.all_reduce(t)
        counts = counts.tolist()
    train_loss = (loss_sum[0] / loss_sum[1]).item()
    p.stats["tokens_seen"] += counts[0]
    p.stats["positions_seen"] += counts[1]
    row = {"iter": p.it, "epoch": epoch + 1, "train_loss": train_loss,
           "tokens_seen": p.stats["tokens_seen"]}
    if run.val_examples:  # the held-out loss goes where train.py logs its val_loss
        row["val_loss"] = mean_loss(run.raw_model, run.val_examples, run.cfg["batch_size"],
                                    run.pad_id, run.device, run.autocast)
    held_out = f", held-out loss {row['val_loss']:.4f}" if run.val_examples else ""
    print0(f"epoch {epoch + 1}: train loss {train_loss:.4f}{held_out}, "
           f"tokens seen {p.stats['tokens_seen']}")
    return row


def answers_before(cfg, ckpt, model, tok, questions, max_new, device):
    """The model's greedy answers to questions before fine-tuning, on rank 0 (None elsewhere): a
    resumed run's come from its checkpoint, as its model has already learned."""
    saved = (ckpt or {}).get("sft", {}).get("answers_before") or {}
    if saved.get("questions") == questions:
        return saved["answers"]
    if ckpt is not None:
        print0("the checkpoint's answers before training were to other questions: answering "
               "them now with the resumed model")
    if not is_master():
        return None
    t0 = time.time()
    before = greedy_answers(model, tok, questions, max_new, device, cfg["template"])
    print0(f"answered {len(questions)} questions before training in {time.time() - t0:.1f}s")
    return before


def report(cfg, questions, refs, n_tr, n_val, before, after, epoch_rows, stats):
    """Print the answers before and after, side by side, and the exact-match rates
    -> answers.json dict."""
    rows_out = [{"question": q, "before": b, "after": a}
                | ({"reference": r} if r is not None else {})
                for q, b, a, r in zip(questions, before, after, refs)]
    exact = lambda which, part: sum(r[which] == r["reference"] for r in part) / max(len(part), 1)
    tr, va, free = rows_out[:n_tr], rows_out[n_tr : n_tr + n_val], rows_out[n_tr + n_val :]
    match_tr = {"before": exact("before", tr), "after": exact("after", tr), "count": n_tr}
    match_va = {"before": exact("before", va), "after": exact("after", va), "count": n_val}
    result = {"exact_match_train": match_tr, "exact_match_heldout": match_va, "epochs": epoch_rows,
              "train_time_s": stats["train_time_s"], "steps": stats["steps"],
              "tokens_per_sec": stats["tokens_seen"] / stats["train_time_s"],
              "padding_share": 1 - stats["tokens_seen"] / max(stats["positions_seen"], 1),
              "trainable_params": stats["trainable_params"], "total_params": stats["total_params"],
              "train": tr, "heldout": va, "free": free}
    shown = [tr[i] for i in spread(n_tr, cfg["show_train"])]
    print_side_by_side(f"training questions ({len(shown)} of the {n_tr} scored)", shown)
    print_side_by_side("held-out questions", va)
    print_side_by_side("free prompts", free)
    print(f"\nexact match on {n_tr} training answers: before {match_tr['before']:.1%}, "
          f"after {match_tr['after']:.1%}; on {n_val} held-out answers: "
          f"before {match_va['before']:.1%}, after {match_va['after']:.1%}")
    print(f"trained {stats['steps']} steps in {stats['train_time_s']:.1f}s: "
          f"{result['tokens_per_sec']:.0f} tokens/s, "
          f"padding {result['padding_share']:.1%} of positions")
    return result


def fine_tune(cfg, ddp, rank, local_rank, world_size, device):
    """The whole run in this process (one of world_size under torchrun): data, answers before,
    epochs, answers after. Returns the answers.json dict on rank 0, else None."""
    check_config(cfg)
    # the same on every rank: the same scratch weights and epoch plans
    torch.manual_seed(cfg["seed"])
    pairs, val_pairs = read_data(cfg)
    # for a tokenizer trained here
    train_text = "<|endoftext|>".join(qa_prompt(q) + a for q, a in pairs)
    model, tok, ckpt = load_start(cfg, train_text, device)
    examples, val_examples, _ = tokenize(cfg, tok, pairs, val_pairs, model.config.block_size)
    if cfg["show_example"] >= 0:
        if not 0 <= cfg["show_example"] < len(examples):
            raise ValueError(f"--show_example={cfg['show_example']}: the training data has "
                             f"examples 0..{len(examples) - 1}")
        if is_master():
            show_example(tok, examples, pairs[cfg["show_example"]][0], cfg["show_example"])
        return None
    dtype = pick_dtype(device, cfg["dtype"])

    # the same questions before and after:
    # training ones (for exact match), held-out ones, free prompts
    train_idx = spread(len(pairs), cfg["eval_train"])
    held = [val_pairs[i] for i in spread(len(val_pairs), cfg["eval_heldout"])]
    questions = ([pairs[i][0] for i in train_idx] + [q for q, _ in held]
                 + list(cfg["free_prompts"]))
    refs = ([pairs[i][1] for i in train_idx] + [a for _, a in held]
            + [None] * len(cfg["free_prompts"]))
    max_new = cfg["gen_length"] or max(len(c) for _, c in examples)
    before = answers_before(cfg, ckpt, model, tok, questions, max_new, device)

    model, epoch_rows, stats = train_epochs(cfg, model, tok, examples, val_examples, ddp,
                                            local_rank, world_size, device, dtype, ckpt,
                                            {"questions": questions, "answers": before})
    if not is_master():
        return None
    after = greedy_answers(model, tok, questions, max_new, device, cfg["template"])
    result = report(cfg, questions, refs, len(train_idx), len(held), before, after,
                    epoch_rows, stats)
    path = os.path.join(cfg["out_dir"], "answers.json")
    atomic_write(path, lambda f: f.write(json.dumps(result, ensure_ascii=False, indent=1).encode()))
    print(f"wrote {path}, {cfg['out_dir']}/ckpt.pt and log.jsonl")
    plot_log(cfg["out_dir"])
    return result


def main(argv=None):
    try:
        argv = sys.argv[1:] if argv is None else argv
        # on resume, the checkpoint's settings, except those given here
        cfg = resumed_config(apply_overrides(DEFAULT_CONFIG, argv), given_keys(argv))
        if cfg["num_threads"] > 0:
            torch.set_num_threads(cfg["num_threads"])
        return run(cfg)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:  # one clear line
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    with quiet_broken_pipe():  # `python sft.py ... | head` ends quietly
        main()
