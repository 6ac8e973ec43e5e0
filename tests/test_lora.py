"""lora.py: the low-rank update against its formula, merging, frozen weights, and a loss that falls."""
import pytest
import torch

import lora
from model import GPT, GPTConfig


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16, **kw))


def test_lora_linear_is_the_formula_and_starts_as_the_base():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 7)
    layer = lora.LoRALinear(base, rank=3, alpha=6.0)
    x = torch.randn(4, 5, 12)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)  # B = 0: exactly the pretrained layer
    torch.nn.init.normal_(layer.lora_B)
    A, B = layer.lora_A.detach(), layer.lora_B.detach()
    want = x @ base.weight.detach().t() + base.bias.detach() + (6.0 / 3) * (x @ A.t() @ B.t())
    torch.testing.assert_close(layer(x), want)
    torch.testing.assert_close(layer.merged_weight(), base.weight + 2.0 * B @ A)


@pytest.mark.parametrize("kw", [dict(), dict(rmsnorm=True, rope=True, swiglu=True, bias=False,
                                                tie_embeddings=False)])
def test_merged_model_equals_the_adapted_one(kw):
    model = tiny(**kw).eval()
    idx = torch.randint(0, 40, (2, 16))
    before = model(idx)[0]
    assert lora.apply_lora(model, rank=4, alpha=8, targets="attn,mlp") == 2 * 4
    torch.testing.assert_close(model(idx)[0], before, rtol=0, atol=0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # a trained adapter
    adapted = model(idx)[0]
    assert not torch.allclose(adapted, before)
    plain = tiny(**kw).eval()
    plain.load_state_dict(lora.merge_state_dict(model.state_dict(), alpha=8))  # the keys of an ordinary model, no more
    torch.testing.assert_close(plain(idx)[0], adapted, rtol=1e-5, atol=1e-5)


def test_only_adapters_train_and_the_loss_falls():
    model = tiny()
    # like a pretrained model's: an output head whose logits can be large (at init std 0.02 after a
    # frozen norm, logits stay near 0 and no adapter can push them far)
    torch.nn.init.normal_(model.transformer.wte.weight, std=1.0)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    lora.apply_lora(model, rank=4, alpha=8, targets="attn,mlp")
    trainable, total = lora.count_params(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".lora_" in n for n in names)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert total == trainable + sum(v.numel() for k, v in frozen.items() if k != "lm_head.weight")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.randint(0, 40, (4, 16))
    losses = []
    for _ in range(40):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        assert all(p.grad is None for n, p in model.named_parameters() if ".lora_" not in n)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    for name, value in model.state_dict().items():  # the base weights did not move
        key = name.replace(".base.", ".")
        if ".lora_" not in name:
            assert torch.equal(value, frozen[key]), name


def test_bad_lora_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"lora_rank=0 must be in \[1, 16\]"):
        lora.apply_lora(tiny(), rank=0, alpha=1)
    with pytest.raises(ValueError, match="lora_rank=17"):
        lora.apply_lora(tiny(), rank=17, alpha=1, targets="attn.c_proj")
    with pytest.raises(ValueError, match="'qkv' is not one of attn, mlp"):
        lora.apply_lora(tiny(), rank=2, alpha=1, targets="qkv")
    with pytest.raises(ValueError, match="matches no Linear layer"):
        lora.apply_lora(torch.nn.Sequential(torch.nn.Embedding(3, 3)), rank=1, alpha=1)
    with pytest.raises(ValueError, match="empty"):
        lora.target_names(" , ")
