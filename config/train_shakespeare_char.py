# A baby GPT on Shakespeare's characters: nanoGPT's GPU settings (about 3 minutes on an A100, val loss ~1.47).
#   python data/shakespeare_char/prepare.py && python train.py config/train_shakespeare_char.py
# On CPU with 2 processes (slow, but the same code path as multi-GPU):
#   torchrun --standalone --nproc_per_node=2 train.py config/train_shakespeare_char.py --device=cpu
out_dir = "out-shakespeare-char"
eval_interval = 250  # keep frequent because we'll overfit
eval_iters = 200
log_interval = 10  # don't print too too often
always_save_checkpoint = False  # we expect to overfit on this small dataset, so only save when val improves

dataset = "shakespeare_char"
# nanoGPT's 64 sequences per iteration, as 2 micro-batches of 32 so that 1 or 2 processes can share them
gradient_accumulation_steps = 2
batch_size = 32
block_size = 256  # context of up to 256 previous characters

# baby GPT model :)
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # with baby networks can afford to go a bit higher
max_iters = 5000
lr_decay_iters = 5000  # make equal to max_iters usually
min_lr = 1e-4  # learning_rate / 10 usually
beta2 = 0.99  # make a bit bigger because number of tokens per iter is small
warmup_iters = 100  # not super necessary potentially
