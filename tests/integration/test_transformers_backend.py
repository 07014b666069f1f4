"""The transformers backend on a tiny randomly initialised Llama with a LoRA adapter, and the bundled GGUF."""

from __future__ import annotations

import shutil

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from app import build_engine
from core.config import LLMSettings, Settings
from core.errors import BackendError
from core.index.embedders import bundled_minilm_path
from core.llm.base import bundled_smollm2_gguf
from core.llm.transformers_backend import TransformersGenerator
from core.models import Message

CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)
MESSAGES = [Message("system", "Answer briefly."), Message("user", "What is the hotel allowance?")]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer Llama over the MiniLM WordPiece vocabulary, plus a LoRA adapter trained by nobody."""
    root = tmp_path_factory.mktemp("tiny-llama")
    base, adapter = root / "base", root / "adapter"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        base.mkdir(exist_ok=True)
        shutil.copy(bundled_minilm_path() / name, base / name)
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(base)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id)
    LlamaForCausalLM(config).save_pretrained(base)
    # init_lora_weights=False gives non-zero B matrices, so the adapter really changes the output.
    lora = get_peft_model(LlamaForCausalLM.from_pretrained(base),
                          LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                     init_lora_weights=False))
    lora.save_pretrained(adapter)
    return base, adapter


def _reference(base, adapter, max_tokens: int) -> str:
    """What peft itself generates with the adapter, greedily."""
    tok = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter).eval()
    enc = tok.apply_chat_template([{"role": m.role, "content": m.content} for m in MESSAGES],
                                  add_generation_prompt=True, return_dict=True, return_tensors="pt")
    enc = {k: enc[k] for k in ("input_ids", "attention_mask")}
    out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_lora_adapter_is_applied_exactly_as_peft_does(tiny_llama):
    base, adapter = tiny_llama
    with_adapter = TransformersGenerator(base, adapter=adapter)
    without = TransformersGenerator(base)

    text = with_adapter.complete(MESSAGES, max_tokens=12)

    assert text == _reference(base, adapter, 12)
    assert text != without.complete(MESSAGES, max_tokens=12)
    assert "+lora:adapter@" in with_adapter.model_id
    assert with_adapter.context_tokens == 256
    assert with_adapter.count_tokens("hotel allowance") == 2


def test_streaming_yields_the_same_text_as_complete(tiny_llama):
    gen = TransformersGenerator(tiny_llama[0], adapter=tiny_llama[1])
    pieces = list(gen.stream(MESSAGES, max_tokens=12))
    assert "".join(pieces).strip() == gen.complete(MESSAGES, max_tokens=12).strip()


def test_bad_configurations_are_clear_errors(tiny_llama, tmp_path):
    base, _ = tiny_llama
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        TransformersGenerator(base, load_in_4bit=True).warm_up()
    with pytest.raises(BackendError, match="not a LoRA adapter folder"):
        TransformersGenerator(base, adapter=tmp_path).warm_up()
    with pytest.raises(BackendError, match="not found"):
        TransformersGenerator(tmp_path / "missing").warm_up()


def test_engine_answers_through_a_local_model(tiny_llama, tmp_path, embedder, samples):
    """A random model writes nonsense; validation must still return only valid, supported output."""
    settings = Settings(data_dir=tmp_path / "d", llm=LLMSettings(backend="transformers", path=tiny_llama[0],
                                                              adapter=tiny_llama[1], max_new_tokens=24))
    engine = build_engine(settings, embedder=embedder)
    engine.ingest([samples / "handbook.md"])
    answer = engine.ask("How much is the hotel allowance in Europe?")
    assert answer.model.startswith("transformers:base@")
    assert answer.abstained and answer.citations == []


def test_bundled_gguf_is_converted_once_and_reloaded_from_the_cache(tmp_path):
    gguf = bundled_smollm2_gguf()
    first = TransformersGenerator(gguf, cache_dir=tmp_path)
    reply = first.complete([Message("user", "Say hello.")], max_tokens=8)
    converted = [p for p in tmp_path.iterdir() if (p / "config.json").exists()]
    assert len(converted) == 1 and not list(tmp_path.glob("*.partial"))
    assert first.context_tokens == 8192 and reply.strip()

    again = TransformersGenerator(gguf, cache_dir=tmp_path)
    assert again.complete([Message("user", "Say hello.")], max_tokens=8) == reply
    assert again.model_id == first.model_id and again.model_id.startswith("transformers:SmolLM2-135M-Instruct")
