"""Chat: prompts built from the chat template's pieces (transformers' apply_chat_template as the
peer), user text never a control token, SFT with --template=chat on a Llama-style model, and the
real SmolLM2 answering through sample.py --question."""
import json
from dataclasses import asdict

import pytest
import torch

import bpe
import checkpoints
import sample
import sft
from files import cache_dir
from model import GPT, GPTConfig
from tests.test_sft import tiny_run_config

SMOLLM2 = cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = ["What is the capital of France?", "스택이란 무엇인가요?", "Explain a hash map.",
             "파이썬의 리스트와 튜플은 어떻게 다른가요?"]


@pytest.fixture(scope="module")
def smollm2():
    if not SMOLLM2.is_file():
        pytest.fail(f"{SMOLLM2} missing: the install step (python model.py download smollm2) "
                    "fetches it")
    return bpe.load_tokenizer(SMOLLM2)


@pytest.fixture(scope="module")
def hf_smollm2():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)


def test_chat_prompt_ids_equal_apply_chat_template(smollm2, hf_smollm2):
    for q in QUESTIONS:
        want = hf_smollm2.apply_chat_template([{"role": "user", "content": q}],
                                              add_generation_prompt=True, tokenize=True)
        want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
        assert bpe.prompt_ids(smollm2, q, "chat") == list(want), q


def test_user_text_is_never_a_control_token(smollm2):
    im_end = smollm2.special_tokens["<|im_end|>"]
    plain = bpe.prompt_ids(smollm2, "a b", "chat")
    sneaky = bpe.prompt_ids(smollm2, "a <|im_end|> b", "chat")
    assert sneaky.count(im_end) == plain.count(im_end)  # only the template's own markers
    assert smollm2.decode(sneaky) == smollm2.render_chat([{"role": "user",
                                                           "content": "a <|im_end|> b"}])
    (prompt, answer), = sft.encode_pairs(smollm2, [("q", "x <|im_end|> y")], "chat")
    assert answer[-1] == smollm2.eot_id == im_end and answer[:-1].count(im_end) == 0
    gpt2 = bpe.gpt2_tokenizer()
    (prompt, answer), = sft.encode_pairs(gpt2, [("q <|endoftext|>", "x <|endoftext|> y")])
    assert (prompt + answer).count(50256) == 1 and answer[-1] == 50256


def test_sft_chat_template_learns_only_the_answer(smollm2, tmp_path, capsys):
    """A tiny Llama-style model (GQA, RoPE, SwiGLU) with SmolLM2's tokenizer, fine-tuned with
    --template=chat: the loss sees the answer and <|im_end|> only, and the answers are learned."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = GPTConfig(block_size=96, vocab_size=smollm2.n_vocab, n_layer=2, n_head=4, n_kv_head=2,
                       n_embd=64, rmsnorm=True, rope=True, swiglu=True, bias=False,
                       tie_embeddings=True)
    start = tmp_path / "start"
    checkpoints.save_checkpoint(str(start / "ckpt.pt"), {
        "model": GPT(config).state_dict(), "model_args": asdict(config),
        "tokenizer": bpe.tokenizer_spec(smollm2)})
    pairs = [("What is a stack?", "Last in, first out."), ("Name the rule of a queue.", "FIFO."),
             ("스택이란?", "후입선출입니다.")]
    train_file = tmp_path / "chat.jsonl"
    train_file.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n"
                                  for q, a in pairs), encoding="utf-8")
    cfg = tiny_run_config(tmp_path, init_from=str(start), template="chat", special_tokens=False,
                          train_file=str(train_file), epochs=40, learning_rate=1e-2,
                          free_prompts=[])
    (prompt, answer), = sft.encode_pairs(smollm2, [sft_pair := ("What is a stack?", "LIFO.")],
                                         "chat")
    inputs, targets = sft.make_row(prompt, answer)
    learned = [t for t in targets if t != sft.IGNORE]
    assert learned == smollm2.encode_ordinary(sft_pair[1]) + [smollm2.special_tokens["<|im_end|>"]]
    result = sft.run(cfg)
    assert result["exact_match_train"]["after"] == 1.0
    capsys.readouterr()
    q, a = result["train"][0]["question"], result["train"][0]["reference"]
    sample.main([f"--init_from={cfg['out_dir']}", f"--question={q}", "--temperature=0",
                 "--num_samples=1", "--max_new_tokens=40", "--device=cpu"])
    out = capsys.readouterr().out  # the checkpoint's template (chat) is used
    assert out.endswith(f"<|im_start|>assistant\n{a}<|im_end|>\n---------------\n")


def test_smollm2_answers_through_sample_py(capsys):
    sample.main(["--init_from=smollm2-135m-instruct", "--question=What is the capital of France?",
                 "--temperature=0", "--num_samples=1", "--max_new_tokens=20", "--device=cpu"])
    assert "<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>" in \
        capsys.readouterr().out


def test_chat_template_needs_a_chat_tokenizer():
    with pytest.raises(ValueError, match="no special token <\\|im_start\\|>"):
        bpe.prompt_ids(bpe.gpt2_tokenizer(), "hi", "chat")
    with pytest.raises(ValueError, match="template='json'"):
        bpe.prompt_ids(bpe.gpt2_tokenizer(), "hi", "json")
    with pytest.raises(SystemExit, match="special_tokens=True adds"):
        sft.main(["--template=chat", "--special_tokens=True"])


def test_export_writes_weights_and_tokenizer_json_that_transformers_reads(smollm2, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import AutoModelForCausalLM

    import model as model_lib
    torch.manual_seed(0)
    config = GPTConfig(block_size=64, vocab_size=smollm2.n_vocab, n_layer=1, n_head=4, n_kv_head=2,
                       n_embd=32, rmsnorm=True, rope=True, swiglu=True, bias=False,
                       rope_layout="half")
    ours = GPT(config).eval()
    checkpoints.save_checkpoint(str(tmp_path / "run" / "ckpt.pt"), {
        "model": ours.state_dict(), "model_args": asdict(config),
        "tokenizer": bpe.tokenizer_spec(smollm2)})
    model_lib.main(["export", "--from", str(tmp_path / "run"), "--to", str(tmp_path / "hf")])
    text = "스택이란? A stack is LIFO: push, pop. 12 + 30 = 42"
    ids = HFTokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json")).encode(text).ids
    assert ids == smollm2.encode_ordinary(text)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x)[0], rtol=1e-4, atol=1e-4)
