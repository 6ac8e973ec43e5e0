"""model.py against transformers (GPT-2 and Llama, random tiny configs, no download) and direct computations."""
import json
import math
import os
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from model import GPT, PEAK_FLOPS, Documents, GPTConfig, KVCache, Linear, length_groups, sample_next
from tests import adapters

TINY = dict(vocab_size=97, n_positions=48, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)


def hf_gpt2(tmp_path, seed=0, scale=1.0, **overrides):
    """A random transformers GPT-2 (eval mode) saved to tmp_path/hf in Hugging Face's own format.
    scale > 1 sharpens the random weights so that greedy generation depends on the context (instead of repeating
    one token forever, which would hide a cache bug)."""
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(GPT2Config(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters and biases, so that a mix-up would show
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.normal_(mean=1.0 if name.endswith("weight") else 0.0, std=0.1)
            else:
                p.mul_(scale)
    path = tmp_path / "hf"
    hf.save_pretrained(path)
    return hf, path


@pytest.mark.parametrize("overrides", [{}, {"activation_function": "gelu", "n_inner": 40, "layer_norm_epsilon": 1e-6}])
def test_logits_match_transformers(tmp_path, overrides):
    hf, path = hf_gpt2(tmp_path, **overrides)
    idx = torch.randint(0, TINY["vocab_size"], (3, 40))
    ours = adapters.run_gpt2_logits(path, idx)
    assert ours.shape == (3, 40, TINY["vocab_size"])
    torch.testing.assert_close(ours, hf(idx).logits.detach(), atol=1e-5, rtol=0)


def test_loads_pytorch_model_bin_and_gpt2_key_prefixes(tmp_path):
    # the original openai-community/gpt2 files have no "transformer." prefix and no lm_head (tied)
    hf, _ = hf_gpt2(tmp_path)
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    torch.save(sd, d / "pytorch_model.bin")
    idx = torch.randint(0, TINY["vocab_size"], (1, 16))
    torch.testing.assert_close(adapters.run_gpt2_logits(d, idx), hf(idx).logits.detach(), atol=1e-5, rtol=0)


def test_greedy_generation_matches_transformers_with_and_without_cache(tmp_path):
    hf, path = hf_gpt2(tmp_path, scale=8.0)
    prompt = torch.randint(0, TINY["vocab_size"], (2, 6))
    expected = hf.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0, eos_token_id=None,
                           attention_mask=torch.ones_like(prompt))
    assert expected.shape == (2, 36) and len(set(expected[:, 6:].flatten().tolist())) >= 8
    assert torch.equal(adapters.run_gpt2_generate(path, prompt, 30, use_cache=True), expected)
    assert torch.equal(adapters.run_gpt2_generate(path, prompt, 30, use_cache=False), expected)


@pytest.mark.parametrize("bias,exact_gelu", [(True, False), (False, True)])
def test_save_pretrained_round_trip_through_transformers(tmp_path, bias, exact_gelu):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=101, n_layer=2, n_head=2, n_embd=16, bias=bias,
                          exact_gelu=exact_gelu)).eval()
    model.save_pretrained(tmp_path / "ours")
    assert sorted(os.listdir(tmp_path / "ours")) == ["config.json", "model.safetensors"]  # no temp files left
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    idx = torch.randint(0, 101, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], atol=1e-5, rtol=0)
        back = GPT.from_pretrained(str(tmp_path / "ours")).eval()
        torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=0, rtol=0)


def test_save_pretrained_refuses_non_gpt2_architectures(tmp_path):
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, rope=True))
    with pytest.raises(ValueError, match="RoPE"):
        model.save_pretrained(tmp_path / "x")


def test_gpt2_small_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no init time
        ours = GPT(GPTConfig(vocab_size=50257)).get_num_params(non_embedding=False)
        theirs = sum(p.numel() for p in GPT2LMHeadModel(GPT2Config()).parameters())
    V, T, C, L = 50257, 1024, 768, 12
    per_block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    assert ours == theirs == V * C + T * C + L * per_block + 2 * C == 124_439_808


def test_kv_cache_equals_full_forward():
    torch.manual_seed(0)
    for flags in ({}, dict(rope=True, rmsnorm=True, swiglu=True, bias=False, tie_embeddings=False)):
        model = GPT(GPTConfig(block_size=24, vocab_size=50, n_layer=2, n_head=4, n_embd=32, **flags)).eval()
        idx = torch.randint(0, 50, (2, 24))
        full, _ = model(idx)
        cache = KVCache(model.config.n_layer, model.config.block_size)
        pieces = [model(idx[:, :10], kv_cache=cache)[0]]  # prefill, then chunk of 3 (masked), then one by one
        pieces.append(model(idx[:, 10:13], kv_cache=cache)[0])
        pieces += [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(13, 24)]
        torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="block_size"):
            model(idx[:, :1], kv_cache=cache)  # the cache is full


def test_generation_records_no_autograd_graph_and_leaves_grad_mode_alone():
    # sample.py streams outside any no_grad: each step must still run without autograd (a graph
    # recorded per token, kept alive by the cache's in-place writes), and the caller, between steps,
    # keeps its own grad mode; generate's ids can be fed to a training step
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=16)).eval()
    seen = []
    model.lm_head.register_forward_hook(lambda mod, inp, out: seen.append(out.requires_grad))
    prompt = torch.randint(0, 50, (1, 3))
    for _ in model.generate_stream(prompt, 4, temperature=0):
        assert torch.is_grad_enabled()
    assert seen == [False] * 4
    out = model.generate(prompt, 4, temperature=0)
    model.train()
    model(out[:, :-1], targets=out[:, 1:])[1].backward()  # an inference tensor would raise here
    assert model.lm_head.weight.grad is not None


def test_generation_slides_past_block_size():
    # documented policy: once the window is full the cache restarts from the last block_size // 2 tokens, positions
    # from 0; a direct loop of full forwards over those windows must pick the same tokens
    torch.manual_seed(0)
    for rope in (False, True):
        model = GPT(GPTConfig(block_size=8, vocab_size=30, n_layer=2, n_head=2, n_embd=16, rope=rope)).eval()
        with torch.no_grad():  # sharper random weights: the greedy choice depends on the context
            for p in model.parameters():
                p.mul_(10.0)
        prompt = torch.randint(0, 30, (1, 11))  # a prompt longer than block_size is cropped to it
        out = model.generate(prompt, 20, temperature=0)
        assert len(set(out[0, 11:].tolist())) >= 5
        ids, start = prompt[0].tolist(), len(prompt[0]) - 8
        for _ in range(20):
            if len(ids) - start > 8:
                start = len(ids) - 4
            with torch.no_grad():
                ids.append(int(model(torch.tensor([ids[start:]]))[0][0, -1].argmax()))
        assert out[0].tolist() == ids
        no_cache = model.generate(prompt, 20, temperature=0, use_cache=False)  # crops every step instead
        assert no_cache.shape == out.shape and torch.equal(no_cache[:, :12], out[:, :12])


def test_packed_sequences_with_mask_and_positions_equal_separate_forwards():
    torch.manual_seed(0)
    for rope in (False, True):
        model = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16, rope=rope)).eval()
        a, b = torch.randint(0, 40, (1, 9)), torch.randint(0, 40, (1, 7))
        mask = torch.zeros(1, 16, 16, dtype=torch.bool)
        mask[0, :9, :9] = torch.ones(9, 9, dtype=torch.bool).tril()
        mask[0, 9:, 9:] = torch.ones(7, 7, dtype=torch.bool).tril()
        positions = torch.cat([torch.arange(9), torch.arange(7)])[None]
        packed, _ = model(torch.cat([a, b], dim=1), attn_mask=mask, positions=positions)
        torch.testing.assert_close(packed, torch.cat([model(a)[0], model(b)[0]], dim=1), atol=1e-5, rtol=0)


def block_diagonal_mask(lengths, T):
    """bool (B, T, T): token i sees token j when both lie in the same document and j <= i; a row's
    tail after its documents is one more document."""
    mask = torch.zeros(len(lengths), T, T, dtype=torch.bool)
    for b, row in enumerate(lengths):
        start = 0
        for n in row + [T - sum(row)]:
            mask[b, start:start + n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
            start += n
    return mask


@pytest.mark.parametrize("rope, n_kv_head", [(False, None), (True, 2)])
def test_documents_attend_as_the_dense_block_diagonal_mask(rope, n_kv_head):
    # packed rows attended per document (no (B, T, T) mask) == the dense mask, in logits and gradients
    T = 300  # long enough for several groups of document lengths
    gen = torch.Generator().manual_seed(1)
    lengths = [[T], [150, 150], [1, 1, 3], [T - 1]]  # full rows, one-token documents, a 1-token tail
    for _ in range(4):  # random rows: 1..T tokens per document, until the next would not fit
        row = []
        while sum(row) + (n := int(torch.randint(1, T + 1, (1,), generator=gen))) <= T:
            row.append(n)
        lengths.append(row)
    docs = Documents(lengths, T)
    assert len(docs.shapes) >= 3
    assert torch.equal(docs.mask(), block_diagonal_mask(lengths, T))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=T, vocab_size=50, n_layer=2, n_head=4, n_embd=32, rope=rope,
                          n_kv_head=n_kv_head))
    idx, targets = torch.randint(0, 50, (len(lengths), T)), torch.randint(0, 50, (len(lengths), T))
    results = []
    for attn_mask in (block_diagonal_mask(lengths, T), docs):
        model.zero_grad()
        logits, loss = model(idx, targets, attn_mask=attn_mask, positions=docs.positions)
        loss.backward()
        results.append((logits, [p.grad.clone() for p in model.parameters()]))
    (dense, dense_grads), (fast, fast_grads) = results
    torch.testing.assert_close(fast, dense, atol=1e-5, rtol=1e-5)
    for g_fast, g_dense in zip(fast_grads, dense_grads):
        torch.testing.assert_close(g_fast, g_dense, atol=1e-5, rtol=1e-5)


def test_length_groups_pad_while_padding_costs_less_than_a_call():
    spans = [(0, 10), (10, 300), (310, 290), (600, 100)]  # (start, length)
    # 300^2 - 290^2 = 5,900 < 256^2: 290 joins 300; 100 would add 80,000 more: a new group,
    # which 10 joins (100^2 - 10^2 = 9,900)
    assert length_groups(spans, 256 ** 2) == [[(10, 300), (310, 290)], [(600, 100), (0, 10)]]
    assert length_groups(spans, 0) == [[(10, 300)], [(310, 290)], [(600, 100)], [(0, 10)]]
    assert length_groups(spans, 10 ** 6) == [[(10, 300), (310, 290), (600, 100), (0, 10)]]


def test_loss_ignores_minus_100():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=8))
    idx, targets = torch.randint(0, 20, (2, 8)), torch.randint(0, 20, (2, 8))
    targets[0, :5] = -100
    logits, loss = model(idx, targets)
    keep = targets != -100
    logp = logits.log_softmax(-1)[keep]  # (N, V)
    assert torch.allclose(loss, -logp.gather(1, targets[keep][:, None]).mean(), atol=1e-6)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_llama_options_match_transformers_llama():
    # RMSNorm + RoPE + SwiGLU + no bias + untied head == LlamaForCausalLM. Llama rotates the two halves of a head
    # (i, i + D/2), we rotate adjacent pairs (2i, 2i+1) as CS336 does: permuting q/k rows maps one onto the other.
    torch.manual_seed(0)
    V, C, H, L, FF, theta = 61, 32, 4, 2, 48, 500.0
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=FF, num_hidden_layers=L,
                                         num_attention_heads=H, num_key_value_heads=H, max_position_embeddings=64,
                                         rms_norm_eps=1e-5, rope_theta=theta, tie_word_embeddings=False)).eval()
    with torch.no_grad():
        for name, p in llama.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
    D = C // H
    half_to_pairs = torch.stack([torch.arange(D // 2), torch.arange(D // 2) + D // 2], dim=1).flatten()
    rows = torch.cat([h * D + half_to_pairs for h in range(H)])
    sd = llama.state_dict()
    weights = {"token_embeddings.weight": sd["model.embed_tokens.weight"], "ln_final.weight": sd["model.norm.weight"],
               "lm_head.weight": sd["lm_head.weight"]}
    for i in range(L):
        p = f"model.layers.{i}."
        weights.update({f"layers.{i}.attn.q_proj.weight": sd[p + "self_attn.q_proj.weight"][rows],
                        f"layers.{i}.attn.k_proj.weight": sd[p + "self_attn.k_proj.weight"][rows],
                        f"layers.{i}.attn.v_proj.weight": sd[p + "self_attn.v_proj.weight"],
                        f"layers.{i}.attn.output_proj.weight": sd[p + "self_attn.o_proj.weight"],
                        f"layers.{i}.ffn.w1.weight": sd[p + "mlp.gate_proj.weight"],
                        f"layers.{i}.ffn.w3.weight": sd[p + "mlp.up_proj.weight"],
                        f"layers.{i}.ffn.w2.weight": sd[p + "mlp.down_proj.weight"],
                        f"layers.{i}.ln1.weight": sd[p + "input_layernorm.weight"],
                        f"layers.{i}.ln2.weight": sd[p + "post_attention_layernorm.weight"]})
    idx = torch.randint(0, V, (2, 20))  # shorter than context_length
    with torch.no_grad():
        ours = adapters.run_transformer_lm(V, 64, C, L, H, FF, theta, weights, idx)
        torch.testing.assert_close(ours, llama(idx).logits, atol=1e-5, rtol=0)
        x = torch.randn(2, 20, C)
        block = adapters.run_transformer_block(C, H, FF, 64, theta, {k.removeprefix("layers.0."): v for k, v in
                                                                     weights.items() if k.startswith("layers.0.")}, x)
        pos = llama.model.rotary_emb(x, torch.arange(20)[None])
        expected = llama.model.layers[0](x, position_embeddings=pos, attention_mask=None)
        expected = expected[0] if isinstance(expected, tuple) else expected
        torch.testing.assert_close(block, expected, atol=1e-5, rtol=0)


def test_rope_rotates_adjacent_pairs():
    torch.manual_seed(0)
    d, theta = 8, 10000.0
    x = torch.randn(2, 5, d)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 3, 0, 9, 1]])
    out = adapters.run_rope(d, theta, 16, x, positions)
    expected = torch.empty_like(x)  # each pair (2i, 2i+1) times the 2x2 rotation by pos * theta^(-2i/d)
    for b in range(2):
        for t in range(5):
            for i in range(d // 2):
                a = positions[b, t].item() * theta ** (-2 * i / d)
                rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                expected[b, t, 2 * i:2 * i + 2] = rot @ x[b, t, 2 * i:2 * i + 2]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # relative: the dot product of a rotated query and key depends only on their distance
    q, k = torch.randn(d), torch.randn(d)
    rq = adapters.run_rope(d, theta, 16, q.expand(3, d), torch.tensor([2, 5, 9]))
    rk = adapters.run_rope(d, theta, 16, k.expand(3, d), torch.tensor([0, 3, 7]))
    dots = (rq * rk).sum(-1)
    torch.testing.assert_close(dots, dots[:1].expand(3), atol=1e-5, rtol=0)


def test_rmsnorm_swiglu_and_small_layers_against_formulas():
    torch.manual_seed(0)
    x, w = torch.randn(3, 5, 16) * 10, torch.randn(16)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(adapters.run_rmsnorm(16, 1e-5, w, x), expected, atol=1e-5, rtol=1e-5)
    w1, w2, w3 = torch.randn(24, 16), torch.randn(16, 24), torch.randn(24, 16)
    expected = ((x @ w1.T) * torch.sigmoid(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(adapters.run_swiglu(16, 24, w1, w2, w3, x), expected, atol=1e-3, rtol=1e-5)
    big = torch.tensor([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]])
    e = torch.exp(torch.tensor([[-2.0, -1.0, 0.0]]))
    torch.testing.assert_close(adapters.run_softmax(big, -1)[0], (e / e.sum())[0])
    assert torch.isfinite(adapters.run_softmax(big, -1)).all()
    torch.testing.assert_close(adapters.run_silu(x), x * torch.sigmoid(x))
    W = torch.randn(7, 16)
    torch.testing.assert_close(adapters.run_linear(16, 7, W, x), x @ W.T)
    E, ids = torch.randn(10, 4), torch.tensor([[3, 0, 9]])
    torch.testing.assert_close(adapters.run_embedding(10, 4, E, ids), E[ids])


def manual_attention(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


@pytest.mark.parametrize("bias", [True, False])
def test_linear_takes_the_vector_kernel_for_one_bfloat16_row(monkeypatch, bias):
    """One bfloat16 row (a decode step) goes through torch.mv / addmv, which read the weight at memory speed on a
    CPU: the same product as torch's F.linear to bfloat16's rounding, in F.linear's shape; more rows, or float32,
    stay on F.linear itself."""
    torch.manual_seed(0)
    lin = Linear(64, 48, bias=bias).to(torch.bfloat16)
    calls = []
    for name in ("mv", "addmv"):
        monkeypatch.setattr(torch, name, lambda *a, f=getattr(torch, name): calls.append(f) or f(*a))
    x = torch.randn(1, 1, 64, dtype=torch.bfloat16)
    y = lin(x)
    assert len(calls) == 1 and y.shape == (1, 1, 48) and y.dtype == torch.bfloat16
    exact = torch.nn.functional.linear(x.double(), lin.weight.double(), None if not bias else lin.bias.double())
    torch.testing.assert_close(y.double(), exact, atol=0.03, rtol=0.02)  # 8 bits of mantissa
    torch.testing.assert_close(y, torch.nn.functional.linear(x, lin.weight, lin.bias), atol=0.03, rtol=0.02)
    rows = torch.randn(2, 3, 64, dtype=torch.bfloat16)
    assert torch.equal(lin(rows), torch.nn.functional.linear(rows, lin.weight, lin.bias)) and len(calls) == 1
    lin32 = lin.float()
    assert torch.equal(lin32(x.float()), torch.nn.functional.linear(x.float(), lin32.weight, lin32.bias))
    assert len(calls) == 1


def test_attention_against_manual_softmax():
    torch.manual_seed(0)
    Q, K, V = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)  # leading dims (2, 3)
    mask = torch.rand(4, 6) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(adapters.run_scaled_dot_product_attention(Q, K, V, mask),
                               manual_attention(Q, K, V, mask), atol=1e-5, rtol=0)
    C, H, T = 16, 4, 6
    x = torch.randn(2, T, C)
    wq, wk, wv, wo = (torch.randn(C, C) / 4 for _ in range(4))
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def heads(t):  # (B, T, C) -> (B, H, T, D)
        return t.view(2, T, H, C // H).transpose(1, 2)
    y = manual_attention(heads(x @ wq.T), heads(x @ wk.T), heads(x @ wv.T), causal)
    expected = y.transpose(1, 2).reshape(2, T, C) @ wo.T
    torch.testing.assert_close(adapters.run_multihead_self_attention(C, H, wq, wk, wv, wo, x), expected,
                               atol=1e-5, rtol=0)
    positions = torch.tensor([[4, 5, 6, 7, 8, 9]])
    rot = lambda t: adapters.run_rope(C // H, 100.0, 16, heads(t), positions)  # noqa: E731
    y = manual_attention(rot(x @ wq.T), rot(x @ wk.T), heads(x @ wv.T), causal)
    expected = y.transpose(1, 2).reshape(2, T, C) @ wo.T
    got = adapters.run_multihead_self_attention_with_rope(C, H, 16, 100.0, wq, wk, wv, wo, x, positions)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_sampling_filters():
    torch.manual_seed(0)
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    assert set(sample_next(logits, 1.0, top_k=2).flatten().tolist()) == {0, 1}
    p = logits[0].softmax(-1)  # top_p just above p0 + p1 keeps exactly the three likeliest tokens
    assert set(sample_next(logits, 1.0, top_p=float(p[0] + p[1]) + 1e-3).flatten().tolist()) == {0, 1, 2}
    assert set(sample_next(logits, 1.0, top_p=1e-6).flatten().tolist()) == {0}
    assert set(sample_next(logits, 0.0).flatten().tolist()) == {0}
    counts = torch.bincount(sample_next(logits, 1.0).flatten(), minlength=6) / 2000
    assert torch.allclose(counts, p, atol=0.04)  # plain sampling follows softmax(logits)


def test_generate_options_and_eos():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=30, n_layer=1, n_head=2, n_embd=16)).eval()
    prompt = torch.randint(0, 30, (1, 4))
    greedy = model.generate(prompt, 10, temperature=0)
    assert torch.equal(model.generate(prompt, 10, top_k=1), greedy)
    eos = greedy[0, 7].item()  # the 4th generated token, used as eos: generation stops right there
    first = greedy[0, 4:].tolist().index(eos) + 4
    assert torch.equal(model.generate(prompt, 10, temperature=0, eos_id=eos), greedy[:, :first + 1])
    assert model.generate(prompt, 0).shape == (1, 4)
    for kwargs in (dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            model.generate(prompt, 3, **kwargs)


def test_bad_inputs(tmp_path):
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match="vocab_size=20"):
        model(torch.tensor([[1, 20]]))
    with pytest.raises(ValueError, match="vocab_size=20"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"positions must be in \[0, 8\), got -1\.\.1"):  # too small, not too big
        model(torch.zeros(1, 3, dtype=torch.long), positions=torch.tensor([[-1, 0, 1]]))
    with pytest.raises(ValueError, match="must be divisible"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="block_size=9"):
        model.crop_block_size(9)
    cache = KVCache(1, 8)
    model(torch.zeros(1, 2, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="kv_cache"):
        model(torch.zeros(1, 2, dtype=torch.long), attn_mask=torch.ones(1, 2, 2, dtype=torch.bool), kv_cache=cache)


def test_bad_checkpoints(tmp_path, monkeypatch):
    hf, path = hf_gpt2(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(str(empty))
    (empty / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        GPT.from_pretrained(str(empty))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "n_embd": 64}))  # disagrees with the weights
    with pytest.raises(ValueError, match=r"transformer\.\S+: checkpoint shape"):
        GPT.from_pretrained(str(path))
    (path / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(ValueError, match=r"missing keys \['transformer\.h\.2\."):
        GPT.from_pretrained(str(path))
    with pytest.raises(ValueError, match="override_args"):
        GPT.from_pretrained(str(path), override_args={"n_layer": 1})
    (path / "config.json").write_text(json.dumps(config))
    assert GPT.from_pretrained(str(path), override_args={"dropout": 0.1}).config.dropout == 0.1
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="openai-community/gpt2-medium"):
        GPT.from_pretrained("gpt2-medium")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if safetensors were not installed
    with pytest.raises(ImportError, match=r"model\.safetensors is in the safetensors format: `pip install"):
        GPT.from_pretrained(str(path))


def test_from_pretrained_by_name_from_hf_cache(tmp_path, monkeypatch):
    hf, path = hf_gpt2(tmp_path)
    snapshot = tmp_path / "hub" / "models--openai-community--gpt2" / "snapshots" / "abc123"
    snapshot.parent.mkdir(parents=True)
    path.rename(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    idx = torch.randint(0, TINY["vocab_size"], (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(GPT.from_pretrained("gpt2").eval()(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


def test_crop_optimizer_and_mfu():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=30, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 30, (1, 8))
    before, _ = model(idx)
    model.crop_block_size(8)
    assert model.transformer.wpe.weight.shape == (8, 16) and model.config.block_size == 8
    torch.testing.assert_close(model(idx)[0], before, atol=0, rtol=0)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert model.estimate_mfu(4, 0.5) is None  # CPU: peak unknown without an override
    N = model.get_num_params()
    assert N == sum(p.numel() for p in model.parameters()) - 8 * 16  # minus the (cropped) position table
    flops = (6 * N + 12 * 2 * 2 * 8 * 8) * 8 * 4 / 0.5
    assert model.estimate_mfu(4, 0.5, peak_flops=1e12) == pytest.approx(flops / 1e12)
    # the device lookup takes the first key found in the name: each GPU must find its own entry, not a shorter one
    for key, _ in PEAK_FLOPS:
        assert next(k for k, _ in PEAK_FLOPS if k in f"NVIDIA {key}") == key
