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

import torch

from files import atomic_write


def make_checkpoint(model, optimizer, model_args, tokenizer_spec, config, iter_num, best_val_loss,
                    rng, **extra):
    """The checkpoint dict of a run (the layout above); extra keys (scaler, epoch, ...) are
    added as given."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "model_args": model_args, "tokenizer": tokenizer_spec, "config": config,
            "iter_num": iter_num, "best_val_loss": best_val_loss, "rng": rng, **extra}


def save_checkpoint(path, checkpoint):
    """Save a dict of plain values and tensors. To a path it is atomic (a temp file in the same
    directory, then a rename), so a run killed mid-write leaves the previous checkpoint whole.
    A file object is written directly."""
    if hasattr(path, "write"):
        torch.save(checkpoint, path)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint saved by save_checkpoint (a path or file object) with weights_only=True:
    plain data and tensors only, so loading a file cannot run code."""
    if not hasattr(path, "read") and not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found")
    return torch.load(path, map_location=map_location, weights_only=True)
