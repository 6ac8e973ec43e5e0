# SFT of GPT-2 (124M) on the demo Q/A data, on a GPU:
#     python sft.py config/sft_gpt2.py
#     torchrun --standalone --nproc_per_node=8 sft.py config/sft_gpt2.py
# The weights come from the local Hugging Face cache (or point init_from at a GPT-2 directory). The markers stay
# plain text for GPT-2's tokenizer; --special_tokens=True adds them as two new tokens (mean-initialized rows).
out_dir = "out-sft-gpt2"
init_from = "gpt2"
train_file = "data/sft/train.txt"
val_file = "data/sft/heldout.jsonl"
dropout = 0.1
epochs = 5
batch_size = 8
learning_rate = 3e-5  # fine-tuning: a small step, the pretrained weights are already good
min_lr = 3e-6
warmup_iters = 10
weight_decay = 0.0
log_interval = 10
