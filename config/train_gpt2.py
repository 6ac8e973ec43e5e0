# GPT-2 (124M) on OpenWebText, nanoGPT's recipe, on one node of 8 GPUs:
#   torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
# ~300B tokens: 12 * 1024 * 40 = 491,520 tokens per iteration, 600,000 iterations (about 4 days on 8 A100s).
# The data: data/openwebtext/train.bin and val.bin in GPT-2 tokens (nanoGPT's data/openwebtext/prepare.py
# writes them; without a meta.pkl train.py assumes GPT-2's vocabulary).
out_dir = "out-gpt2"
dataset = "openwebtext"

batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8  # over all 8 GPUs together: 5 micro-steps each

max_iters = 600000
lr_decay_iters = 600000

eval_interval = 1000
eval_iters = 200
log_interval = 10

weight_decay = 1e-1
compile = True
hellaswag_interval = 0  # e.g. 5000 with data/hellaswag/hellaswag_val.jsonl (python hellaswag.py --split val downloads it)
