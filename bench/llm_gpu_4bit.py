"""Prompt and decode speed of a Llama-architecture model in 4-bit with a LoRA adapter, on CUDA.

No weights can be downloaded, so the script builds a randomly initialised model
of the requested shape (default: Llama-2-7B's), saves it, and loads it back
through IMP's own TransformersGenerator with ``load_in_4bit`` (bitsandbytes NF4)
and a LoRA adapter folder, exactly as production does. Speed does not depend on
the weights' values. Measured: load time, GPU memory, prefill tokens/s for a
``--prompt``-token prompt, and decode tokens/s (batch 1, greedy), beside the
memory-bandwidth bound for decode (bytes of weights read per token).

``--tiny`` runs the same code path with a small model and without 4-bit, on
whatever device is present, to check the script before spending GPU time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table, write_result  # noqa: E402

import app  # noqa: E402,F401  (sets the offline environment first)
from core.llm.transformers_backend import TransformersGenerator  # noqa: E402
from core.index.embedders import bundled_minilm_path  # noqa: E402
from core.models import Message  # noqa: E402

SHAPES = {
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=30522, max_position_embeddings=2048),
}
# Published peak memory bandwidth (bytes/s) of the GPUs this may run on.
BANDWIDTH = {"H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12, "A100-SXM4-80GB": 2.04e12}


def build(folder: Path, shape: str) -> tuple[Path, Path]:
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    base, adapter = folder / "base", folder / "adapter"
    base.mkdir(parents=True)
    # Any fast tokenizer serves for timing; the bundled MiniLM one is local. Ids beyond the
    # model's vocabulary never occur because the prompt is built from token ids below.
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(bundled_minilm_path() / name, base / name)
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(base)
    config = LlamaConfig(**SHAPES[shape], pad_token_id=0, bos_token_id=1, eos_token_id=2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(base)
    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj",
                                                                              "o_proj"], init_lora_weights=False))
    lora.save_pretrained(adapter)
    del model, lora
    if device == "cuda":
        torch.cuda.empty_cache()
    return base, adapter


def measure(gen: TransformersGenerator, prompt_tokens: int, new_tokens: int) -> dict:
    import torch

    model = gen._model  # the loaded model; timing needs it directly
    device = next(model.parameters()).device
    vocab = min(model.config.vocab_size, 30000)
    ids = torch.randint(100, vocab, (1, prompt_tokens), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        model(input_ids=ids[:, :32])  # warm-up: kernels, allocator
        sync()
        t = time.perf_counter()
        model(input_ids=ids)
        sync()
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(input_ids=ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=0)
        sync()
        total = time.perf_counter() - t
    made = out.shape[1] - prompt_tokens
    decode = max(1e-9, total - prefill)
    return {"prompt_tokens": prompt_tokens, "new_tokens": made, "prefill_s": round(prefill, 3),
            "prefill_tok_s": round(prompt_tokens / prefill, 1), "decode_tok_s": round(made / decode, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="small model, no 4-bit: a dry run of the code path")
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    import torch

    info = header("LLM 4-bit + LoRA speed" + (" (tiny dry run)" if args.tiny else ""))
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU (use --tiny for a dry run on this machine)")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t = time.perf_counter()
        base, adapter = build(Path(tmp), "tiny" if args.tiny else "llama-7b")
        built = time.perf_counter() - t
        t = time.perf_counter()
        gen = TransformersGenerator(base, adapter=adapter, load_in_4bit=not args.tiny,
                                    device="cuda" if torch.cuda.is_available() else "cpu")
        gen.warm_up()
        loaded = time.perf_counter() - t
        # After loading, the GPU holds the weights (4-bit base + LoRA) and little else: decode
        # reads all of them once per token, which bounds decode speed by memory bandwidth.
        weight_bytes = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
        model_id = gen.model_id
        sample = gen.complete([Message("user", "hello")], max_tokens=4)
        result = measure(gen, args.prompt if not args.tiny else 64, args.new if not args.tiny else 16)
    result |= {"build_s": round(built, 1), "load_s": round(loaded, 1), "model_id": model_id,
               "sample_reply_chars": len(sample)}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        bw = next((v for k, v in BANDWIDTH.items() if k in name), None)
        result |= {"gpu": name, "weights_gib": round(weight_bytes / 2**30, 2),
                   "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                   "bandwidth_bound_decode_tok_s": round(bw / weight_bytes, 1) if bw else None}
    table("results", list(result), [list(result.values())])
    write_result("llm_gpu_4bit" + ("_tiny" if args.tiny else ""), info | result)


if __name__ == "__main__":
    main()
