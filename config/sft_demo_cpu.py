# SFT demo on this repo's Korean/English programming Q/A (data/sft/), from scratch on a CPU in a few minutes:
#     python sft.py config/sft_demo_cpu.py
# A 4-layer model with its own 1,024-token BPE (trained on the training pairs at start-up, with <|question|>,
# <|answer|> and <|endoftext|> as special tokens) memorizes the 137 training pairs; the 20 held-out paraphrases
# show how little a model this small, with no pretraining, generalizes.
out_dir = "out-sft-demo"
init_from = "scratch"
tokenizer = "bpe:1024"
special_tokens = True
train_file = "data/sft/train.txt"
val_file = "data/sft/heldout.jsonl"
n_layer = 4
n_head = 4
n_embd = 128
block_size = 128
dropout = 0.0
epochs = 40
batch_size = 8
learning_rate = 2e-3  # a small model from scratch takes a much larger step than a pretrained one being tuned
min_lr = 1e-4
warmup_iters = 30
weight_decay = 0.0
log_interval = 100
device = "cpu"
num_threads = 1  # a model this small gains nothing from more threads, and loses a lot on a busy machine
