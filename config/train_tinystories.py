# A small GPT on TinyStories with our own 10,000-token BPE (data/tinystories/prepare.py trains it).
#   python data/tinystories/prepare.py && python train.py config/train_tinystories.py
# Close to Stanford CS336 assignment 1's baseline (4 layers, 16 heads, 512 dims, context 256), on one GPU;
# on a CPU try --n_layer=4 --n_embd=256 --n_head=8 --batch_size=16 --max_iters=2000 --device=cpu.
out_dir = "out-tinystories"
eval_interval = 500
eval_iters = 100
log_interval = 10
always_save_checkpoint = True

dataset = "tinystories"
gradient_accumulation_steps = 1
batch_size = 128
block_size = 256

n_layer = 4
n_head = 16
n_embd = 512
dropout = 0.0
bias = False

learning_rate = 1e-3
max_iters = 10000
lr_decay_iters = 10000
min_lr = 1e-4
warmup_iters = 200
weight_decay = 0.1
beta2 = 0.95
