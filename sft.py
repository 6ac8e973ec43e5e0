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
import dataclasses
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
from checkpoints import gather_state, load_checkpoint, make_checkpoint, save_checkpoint
from configurator import apply_overrides, quiet_broken_pipe
from files import ANSWER, QUESTION, atomic_write, qa_prompt, read_qa_file
from model import GPT, Documents, GPTConfig, decode_generated, load_pretrained, pad_vocab_size
from runtime import (JsonlLogger, autocast_context, claim_out_dir, duration, is_master, pick_device,
                     pick_dtype, plot_log, print0, rng_states, setup_ddp, start_wandb, teardown_ddp)
from lora import count_params, merge_state_dict
from token_lengths import recommend_length
from train import (SCALE_CONFIG, check_scale_options, get_lr, optimizer_step, prepare_model,
                   set_lr, stop_if_diverged)

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
    """-> (model on device, bpe.Tokenizer) to fine-tune, per init_from;
    markers added if special_tokens."""
    init = cfg["init_from"]
    ckpt_dir = cfg["out_dir"] if init == "resume" else init
    if init == "scratch":
        tok = base_tokenizer(cfg["tokenizer"], train_text, cfg["special_tokens"])
        tok = add_marker_tokens(tok) if cfg["special_tokens"] else tok
        model = GPT(GPTConfig(block_size=cfg["block_size"], vocab_size=pad_vocab_size(tok.n_vocab),
                              n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                              bias=cfg["bias"], dropout=cfg["dropout"]))
        return model.to(device), tok
    path = os.path.join(ckpt_dir, "ckpt.pt")
    if init == "resume" and not os.path.isfile(path):
        raise FileNotFoundError(f"init_from=resume: no checkpoint at {path}; point --out_dir at "
                                "the run to go on from, or start from scratch, gpt2 or a directory "
                                "(--init_from=...)")
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
    return model.to(device), tok


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
    ddp, rank, local_rank, world_size, device = setup_ddp(device, cfg["backend"])
    try:  # out_dir is held for the run (--show_example writes nothing)
        with claim_out_dir(cfg["out_dir"], cfg["init_from"], cfg["overwrite"]) \
                if cfg["show_example"] < 0 else nullcontext():
            return fine_tune(cfg, ddp, rank, local_rank, world_size, device)
    finally:
        teardown_ddp()


def check_config(cfg):
    if cfg["template"] not in TEMPLATES:
        raise ValueError(f"template={cfg['template']!r}: expected one of {', '.join(TEMPLATES)}")
    if cfg["template"] == "chat" and cfg["special_tokens"]:
        raise ValueError("special_tokens=True adds <|question|>/<|answer|>, which template=chat "
                         "does not use: drop one of them")
    for key in ("epochs", "batch_size", "log_interval"):
        if cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]} must be at least 1")
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
                 dtype):
    """Every epoch: its steps, then the held-out loss, a log.jsonl row and ckpt.pt.
    -> (the trained model, the epoch rows, {steps, train_time_s, tokens_seen, positions_seen})."""
    rows = [make_row(p, c) for p, c in examples]  # (inputs, targets) per example
    lengths = [len(x) for x, _ in rows]
    pad_id = tok.eot_id  # any valid id: padding is never attended to and its targets are ignored
    autocast = autocast_context(device, dtype)
    g = torch.Generator().manual_seed(cfg["seed"])
    plans = [epoch_plan(lengths, cfg["batch_size"], cfg["packing"], model.config.block_size, g)
             for _ in range(cfg["epochs"])]
    plans = rank_share(plans, dist.get_rank() if ddp else 0, world_size)
    total_iters = sum(len(plan) for plan in plans)
    raw_model = model
    model, optimizer, scaler = prepare_model(raw_model, SimpleNamespace(**cfg), device, dtype, ddp,
                                             local_rank)
    wandb_run = start_wandb(cfg["wandb_project"], cfg["wandb_run_name"], cfg) \
        if cfg["wandb_log"] else None
    logger = JsonlLogger(os.path.join(cfg["out_dir"], "log.jsonl"), 0, wandb_run)  # a fresh log
    print0(f"training {raw_model.get_num_params() / 1e6:.2f}M parameters for {cfg['epochs']} "
           f"epochs, {total_iters} steps ({'packing' if cfg['packing'] else 'padding'}), "
           f"on {device}")
    it, best_val, epoch_rows = 0, float("inf"), []
    trainable, total = count_params(raw_model)
    stats = {"steps": total_iters, "train_time_s": 0.0, "tokens_seen": 0, "positions_seen": 0,
             "trainable_params": trainable, "total_params": total}
    log_time, log_tokens = 0.0, 0  # seconds spent in training steps (not in evaluation)
    for epoch, plan in enumerate(plans):
        model.train()
        loss_sum = torch.zeros(2, device=device)  # sum of loss * learned tokens, learned tokens
        counts = [0, 0]  # input tokens (padding excluded), input positions (padding included)
        for batch in plan:
            t0 = time.time()
            lr = get_lr(it, cfg["learning_rate"], cfg["min_lr"], cfg["warmup_iters"], total_iters) \
                if cfg["decay_lr"] else cfg["learning_rate"]
            set_lr(optimizer, lr)
            loss, norm, n_learned, n_positions = train_step(model, optimizer, scaler, batch, rows,
                                                            cfg, pad_id, device, autocast)
            n_real = sum(lengths[i] for row in batch for i in row)  # no padding
            loss_sum += torch.stack([loss.detach().float() * n_learned, n_learned.float()])
            counts = [counts[0] + n_real, counts[1] + n_positions]
            dt, it = time.time() - t0, it + 1
            stats["train_time_s"] += dt
            log_time, log_tokens = log_time + dt, log_tokens + n_real
            if it % cfg["log_interval"] == 0 and is_master():  # tokens/s: this rank's x the ranks
                ms, tps = log_time * 1000 / cfg["log_interval"], log_tokens * world_size / log_time
                eta = stats["train_time_s"] / it * (total_iters - it)  # mean step time so far
                print0(f"iter {it}/{total_iters}: loss {loss.item():.4f}, grad_norm "
                       f"{norm.item():.4f}, lr {lr:.2e}, {ms:.0f} ms/iter, {tps:.0f} tokens/s, "
                       f"eta {duration(eta)}")
                logger.log({"iter": it, "loss": loss.item(), "grad_norm": norm.item(), "lr": lr,
                            "dt_ms": ms, "tokens_per_sec": tps})
                log_time, log_tokens = 0.0, 0
        row = end_epoch(cfg, raw_model, optimizer, tok, val_examples, loss_sum, counts, stats, it,
                        epoch, pad_id, device, autocast)
        best_val = min(best_val, row.get("val_loss", best_val))
        epoch_rows.append(row)
        logger.log(row)
        stop_if_diverged(it, {k: row[k] for k in ("train_loss", "val_loss") if k in row},
                         cfg["learning_rate"], raw_model)
        model_state = save_sft(cfg, raw_model, optimizer, tok, it, best_val, device)
    if isinstance(raw_model, FSDPModule) and is_master():  # answers come from one whole model
        raw_model = GPT(raw_model.config).to(device)
        raw_model.load_state_dict(model_state)
    return raw_model, epoch_rows, stats


def save_sft(cfg, raw_model, optimizer, tok, it, best_val, device):
    """Write out_dir/ckpt.pt (merged LoRA weights, gathered FSDP shards) on rank 0 -> the model's
    state_dict there (every rank must call: FSDP gathers)."""
    model_state, optimizer_state = gather_state(raw_model, optimizer)
    if not is_master():
        return None
    if cfg["lora_rank"]:
        model_state = merge_state_dict(model_state, cfg["lora_alpha"])
    save_checkpoint(os.path.join(cfg["out_dir"], "ckpt.pt"), make_checkpoint(
        model_state, optimizer_state, dataclasses.asdict(raw_model.config),
        bpe.tokenizer_spec(tok), dict(cfg), it, best_val, [rng_states(device)]))
    return model_state


def end_epoch(cfg, raw_model, optimizer, tok, val_examples, loss_sum, counts, stats, it, epoch,
              pad_id, device, autocast):
    """The epoch's row: token-weighted mean training loss over all ranks,
    held-out loss, tokens seen."""
    if dist.is_initialized():
        counts = torch.tensor(counts, device=device)
        for t in (loss_sum, counts):
            dist.all_reduce(t)
        counts = counts.tolist()
    train_loss = (loss_sum[0] / loss_sum[1]).item()
    stats["tokens_seen"] += counts[0]
    stats["positions_seen"] += counts[1]
    row = {"iter": it, "epoch": epoch + 1, "train_loss": train_loss,
           "tokens_seen": stats["tokens_seen"]}
    if val_examples:  # the held-out loss goes where train.py logs its val_loss
        row["val_loss"] = mean_loss(raw_model, val_examples, cfg["batch_size"], pad_id, device,
                                    autocast)
    held_out = f", held-out loss {row['val_loss']:.4f}" if val_examples else ""
    print0(f"epoch {epoch + 1}: train loss {train_loss:.4f}{held_out}, "
           f"tokens seen {stats['tokens_seen']}")
    return row


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
    model, tok = load_start(cfg, train_text, device)
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
    t0 = time.time()
    before = greedy_answers(model, tok, questions, max_new, device, cfg["template"]) \
        if is_master() else None
    print0(f"answered {len(questions)} questions before training in {time.time() - t0:.1f}s")

    model, epoch_rows, stats = train_epochs(cfg, model, tok, examples, val_examples, ddp,
                                            local_rank, world_size, device, dtype)
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
        cfg = apply_overrides(DEFAULT_CONFIG, sys.argv[1:] if argv is None else argv)
        if cfg["num_threads"] > 0:
            torch.set_num_threads(cfg["num_threads"])
        return run(cfg)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:  # one clear line
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    with quiet_broken_pipe():  # `python sft.py ... | head` ends quietly
        main()
