# Fine-tune GPT-2 weights on Shakespeare (GPT-2 tokens): nanoGPT's finetune_shakespeare.py.
#   python data/shakespeare/prepare.py && python train.py config/finetune_shakespeare.py
# init_from takes gpt2 / gpt2-medium / gpt2-large / gpt2-xl (from the local Hugging Face cache) or a
# Hugging Face GPT-2 directory: --init_from=/path/to/gpt2
out_dir = "out-shakespeare"
eval_interval = 5
eval_iters = 40
always_save_checkpoint = False  # only save when val improves

dataset = "shakespeare"
init_from = "gpt2-xl"  # the largest GPT-2 model

# only 1 epoch over the ~300K tokens of tinyshakespeare: 32 examples of 1024 tokens per iteration
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20

# fine-tune at a constant learning rate
learning_rate = 3e-5
decay_lr = False
