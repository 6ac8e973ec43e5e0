# A baby GPT on Shakespeare's characters that trains on a laptop CPU in minutes.
# nanoGPT's README settings for "I only have a macbook": it reports val loss 1.88 after 2,000 iterations.
#   python data/shakespeare_char/prepare.py && python train.py config/train_shakespeare_char_cpu.py
out_dir = "out-shakespeare-char-cpu"
eval_interval = 250
eval_iters = 20
log_interval = 10
always_save_checkpoint = False  # keep the best model by val loss

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000  # make equal to max_iters usually
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a bit bigger because the number of tokens per iter is small
warmup_iters = 100

device = "cpu"
compile = False
