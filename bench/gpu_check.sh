#!/usr/bin/env bash
# One command that proves the CUDA paths end to end and prints their figures (under 8 minutes on one
# GPU; CI never has a GPU, so nothing else requires one):
#   1. the test suite (it runs on the CPU parts of the machine; the CUDA figures come after)
#   2. GPT-2 124M training: bf16 autocast, torch.compile, flash attention, fused AdamW -> tok/s, MFU
#   3. DDP and FSDP with torchrun on every GPU present (one GPU: a world of one)
#   4. activation checkpointing's memory saving (bench/memory.py, torch.cuda.max_memory_allocated)
#   5. 128-token greedy generation speed of GPT-2 124M (random weights: speed does not need trained ones)
#
#   bash bench/gpu_check.sh                  # on a GPU machine, from the repo root
#   DEVICE=cpu QUICK=1 bash bench/gpu_check.sh   # the same steps, tiny, on a CPU: checks the script
# Data: GPT-2 tokens of this repo's own text (no download), prepared into $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/scratchgpt-gpu-check}
NGPU=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
if [ "${QUICK:-0}" = 1 ]; then  # a few seconds per step: the script's plumbing, not its figures
    MODEL="--n_layer=2 --n_head=2 --n_embd=64 --block_size=64 --batch_size=2"
    ITERS=4 TESTS="tests/test_layout.py"
else
    MODEL="--n_layer=12 --n_head=12 --n_embd=768 --block_size=1024 --batch_size=16"
    ITERS=60 TESTS=""
fi
mkdir -p "$WORK"
step() { echo; echo "=== $* ($(date +%T))"; }

step "1. tests"
python -m pytest -q $TESTS 2>&1 | tail -n 3 || echo "(the suite failed: the figures below still run)"

step "2. data: GPT-2 tokens of the repo's text"
cat README.md ./*.py tests/*.py > "$WORK/text.txt"
python data/shakespeare/prepare.py --input "$WORK/text.txt" --out_dir "$WORK/data"

TRAIN="train.py --dataset=$WORK/data --device=$DEVICE $MODEL --max_iters=$ITERS --lr_decay_iters=$ITERS
       --warmup_iters=2 --eval_interval=100000 --eval_iters=2 --log_interval=10 --gradient_accumulation_steps=$NGPU
       --always_save_checkpoint=False"
step "3. train GPT-2 124M: bf16 autocast, compile, flash attention (SDPA), fused AdamW"
python $TRAIN --compile=$([ "$DEVICE" = cuda ] && echo True || echo False) --out_dir="$WORK/single" \
    2>&1 | grep -E "^(iter|1 process|step)" | tail -n 4

step "4. DDP, then FSDP, with torchrun on $NGPU process(es)"
torchrun --standalone --nproc_per_node="$NGPU" $TRAIN --out_dir="$WORK/ddp" 2>&1 \
    | grep -E "^iter" | tail -n 2
torchrun --standalone --nproc_per_node="$NGPU" $TRAIN --fsdp=True --out_dir="$WORK/fsdp" 2>&1 \
    | grep -E "^iter" | tail -n 2

step "5. activation checkpointing: peak memory of one step"
python bench/memory.py --device "$DEVICE" --modes "plain,activation checkpointing" \
    $([ "${QUICK:-0}" = 1 ] && echo "--n_layer 2 --n_embd 64 --block_size 64" \
      || echo "--n_layer 12 --n_embd 768 --n_head 12 --block_size 1024 --batch_size 8 --vocab_size 50304")

step "6. 128-token greedy generation, GPT-2 124M shape, bf16 on CUDA"
python - "$DEVICE" "${QUICK:-0}" <<'EOF'
import sys, time, torch
from model import GPT, GPTConfig
device, quick = sys.argv[1], sys.argv[2] == "1"
dtype = torch.bfloat16 if device == "cuda" else torch.float32
config = GPTConfig(vocab_size=50304, **(dict(n_layer=2, n_embd=64, n_head=2) if quick else {}))
model = GPT(config).to(device, dtype).eval()
idx = torch.randint(0, 50257, (1, 16), device=device)
for _ in range(2):  # the first run warms up kernels
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    out = model.generate(idx, 128, temperature=0)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.time() - t0
print(f"{out.shape[1] - 16} tokens in {dt:.2f} s: {128 / dt:.0f} tokens/s ({device}, {dtype})")
EOF
step "done"
