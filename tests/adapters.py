"""The grading interface: small functions with fixed signatures that connect a test suite to our code.

Each function only translates arguments and calls the real implementation in a root module.
Names and meanings follow Stanford CS336's 2025 assignment 1 where one exists.
Each section below belongs to one module; edit only your module's section.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch


# ---------------------------------------------------------------- bpe.py (issue 2)
def run_train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str], **kwargs):
    raise NotImplementedError


def get_tokenizer(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str] | None = None):
    raise NotImplementedError
# ---------------------------------------------------------------- end bpe.py


# ---------------------------------------------------------------- wordpiece.py (issue 3)
def run_train_wordpiece(input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> list[str]:
    raise NotImplementedError


def get_wordpiece_tokenizer(vocab: list[str], lowercase: bool = True):
    raise NotImplementedError
# ---------------------------------------------------------------- end wordpiece.py


# ---------------------------------------------------------------- model.py (issue 4)
# run_gpt2_logits, run_gpt2_generate, run_softmax, run_silu, run_linear, run_embedding,
# run_scaled_dot_product_attention, run_rmsnorm, run_swiglu, run_rope,
# run_multihead_self_attention, run_multihead_self_attention_with_rope,
# run_transformer_block, run_transformer_lm
# ---------------------------------------------------------------- end model.py


# ---------------------------------------------------------------- train.py (issue 5)
# run_get_batch, run_cross_entropy, run_gradient_clipping, get_adamw_cls,
# run_get_lr_cosine_schedule, run_save_checkpoint, run_load_checkpoint
# ---------------------------------------------------------------- end train.py


# ---------------------------------------------------------------- sft.py (issue 6)
# get_sft_batch
# ---------------------------------------------------------------- end sft.py


# ---------------------------------------------------------------- hellaswag.py (issue 8)
# run_hellaswag_scores
# ---------------------------------------------------------------- end hellaswag.py
