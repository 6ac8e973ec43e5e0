"""Plumbing: the checkpoint file, `out_dir/ckpt.pt`, written by train.py and sft.py
and read by every script.

One dict of plain values and tensors (never pickled objects), saved atomically and loaded with
weights_only=True, so a crash never leaves half a checkpoint and loading one never runs code:
    model        the model's state_dict (GPT-2 parameter names)
    model_args   the GPTConfig fields, to rebuild the model before loading its weights
    tokenizer    the tokenizer spec (bpe.tokenizer_spec), so that text in and out uses the same ids
    optimizer    AdamW's state, to continue training exactly
    config       the run's whole config dict
    iter_num, best_val_loss, rng (every rank's RNG states), and scaler (float16 only)
"""
import os
import pickle

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_optimizer_state_dict)

from files import atomic_write

WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered, on the CPU, on rank 0


def make_checkpoint(model_state, optimizer_state, model_args, tokenizer_spec, config, iter_num,
                    best_val_loss, rng, **extra):
    """The checkpoint dict of a run (the layout above), from gather_state's two state_dicts; extra
    keys (scaler, epoch, ...) are added as given."""
    return {"model": model_state, "optimizer": optimizer_state, "model_args": model_args,
            "tokenizer": tokenizer_spec, "config": config, "iter_num": iter_num,
            "best_val_loss": best_val_loss, "rng": rng, **extra}


def gather_state(model, optimizer):
    """-> (model state_dict, optimizer state_dict) whole, on the CPU, keyed by parameter name.

    Under FSDP each rank holds a shard of every tensor: every rank must call this (it gathers), and
    rank 0 gets the dicts one process would write, so any number of processes resumes from them."""
    return (get_model_state_dict(model, options=WHOLE),
            get_optimizer_state_dict(model, optimizer, options=WHOLE))


def load_optimizer_state(model, optimizer, state):
    """Continue AdamW from a checkpoint: ours (keyed by parameter name, written by any number of
    processes; sharded again here under FSDP), or an older one keyed by position."""
    if all(isinstance(k, int) for k in state["state"]):
        optimizer.load_state_dict(state)
    else:
        set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                                 options=StateDictOptions(full_state_dict=True))


def save_checkpoint(path, checkpoint):
    """Save a dict of plain values and tensors. To a path it is atomic (a temp file in the same
    directory, then a rename), so a run killed mid-write leaves the previous checkpoint whole.
    A file object is written directly."""
    if hasattr(path, "write"):
        torch.save(checkpoint, path)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path, map_location="cpu", mmap=False):
    """Load a checkpoint saved by save_checkpoint (a path or file object) with weights_only=True:
    plain data and tensors only, so loading a file cannot run code. mmap: read tensors lazily
    (a config can be looked at without reading the weights)."""
    if not hasattr(path, "read") and not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    # cut, empty, foreign; OSError: mmap of a file cut short
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise ValueError(f"checkpoint {getattr(path, 'name', path)} cannot be read (truncated, "
                         f"empty or not a torch checkpoint: {why}); delete it or point to "
                         "another one") from None
