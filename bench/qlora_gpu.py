"""QLoRA training speed and memory of a 7B Llama: 4-bit NF4 base, LoRA r=8/alpha=16, on CUDA.

The model is loaded by ``training.adapter.load_model``, the loader the answer
adapter is trained with: bitsandbytes NF4 with double quantisation and bfloat16
compute, ``prepare_model_for_kbit_training`` (gradient checkpointing on), LoRA on
the attention projections. Without ``--model`` no weights can be downloaded, so a
randomly initialised Llama of Llama-2-7B's shape is saved and loaded back; speed
and memory do not depend on the weights' values. Each step is a forward and
backward pass over ``--batch`` synthetic sequences of ``--length`` tokens (loss on
every token) and an AdamW step on the LoRA weights. Printed as JSON: load time,
step time (median and p90 after ``--warmup`` steps), tokens/s, the memory the
4-bit weights take and the peak GPU memory while training.

``--tiny`` runs the same code path with a small model and without 4-bit on
whatever device is present, to check the script before spending GPU time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, quiet, write_result

import app  # noqa: F401  (sets the offline environment first)
from core.index.embedders import bundled_minilm_path
from training.adapter import AdapterConfig, load_model

SHAPES = {
    "llama-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                 "max_position_embeddings": 4096},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048},
}


def build(folder: Path, shape: str) -> Path:
    """A random Llama of ``shape`` saved as a model folder (bfloat16 on CUDA), with a local tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True)
    # The loader wants a tokenizer beside the weights; any local one serves, the steps use token ids.
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(bundled_minilm_path() / name, folder / name)
    config = LlamaConfig(**SHAPES[shape], pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cuda = torch.cuda.is_available()
    with torch.device("cuda" if cuda else "cpu"):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(folder)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return folder


def run_steps(model, steps: int, warmup: int, batch: int, length: int, lr: float) -> dict:
    import torch

    device = next(p for p in model.parameters() if p.requires_grad).device
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    vocab = model.config.vocab_size
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(0)
    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(warmup + steps):
        ids = torch.randint(3, vocab, (batch, length), generator=gen).to(device)
        sync()
        began = time.perf_counter()
        # bfloat16 autocast as the Trainer runs QLoRA (bf16=True on CUDA)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - began)
            losses.append(float(loss.detach()))
    median = statistics.median(times)
    ordered = sorted(times)
    result = {"steps": steps, "warmup_steps": warmup, "batch": batch, "length": length,
              "step_s_median": round(median, 4), "step_s_p90": round(ordered[min(len(ordered) - 1,
                                                                                    int(0.9 * len(ordered)))], 4),
              "tokens_per_s": round(batch * length / median, 1), "loss_first": round(losses[0], 4),
              "loss_last": round(losses[-1], 4),
              "trainable_params": sum(p.numel() for p in params),
              "total_params": sum(p.numel() for p in model.parameters())}
    if cuda:
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="a local Llama model folder (default: random 7B)")
    ap.add_argument("--tiny", action="store_true", help="small random model, no 4-bit: a dry run of the code path")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--length", type=int, default=1024, help="tokens per synthetic sequence")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--workdir", type=Path, default=None, help="where the random model is saved (about 13 GB)")
    args = ap.parse_args()
    quiet()
    import torch

    cuda = torch.cuda.is_available()
    info = header("QLoRA training steps" + (" (tiny dry run)" if args.tiny else ""))
    if not args.tiny and not cuda:
        sys.exit("needs a CUDA GPU (use --tiny for a dry run on this machine)")
    length = min(args.length, 64) if args.tiny else args.length
    config = AdapterConfig(r=8, alpha=16, load_in_4bit=not args.tiny)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t = time.perf_counter()
        base = args.model or build(Path(tmp) / "base", "tiny" if args.tiny else "llama-7b")
        built = time.perf_counter() - t
        t = time.perf_counter()
        _, model, four_bit = load_model(base, config)
        loaded = time.perf_counter() - t
        weights = torch.cuda.memory_allocated() / 2**30 if cuda else None
        result = run_steps(model, args.steps, args.warmup, args.batch, length, args.lr)
    result = {"model": str(args.model) if args.model else ("random tiny" if args.tiny else "random llama-7b shape"),
              "four_bit": four_bit, "lora_r": config.r, "lora_alpha": config.alpha,
              "target_modules": list(config.target_modules), "build_s": round(built, 1),
              "load_s": round(loaded, 1), **result}
    if cuda:
        result |= {"gpu": torch.cuda.get_device_name(0), "weights_gib": round(weights, 2)}
    print(json.dumps(result, indent=2))
    write_result("qlora_gpu" + ("_tiny" if args.tiny else ""), info | result)


if __name__ == "__main__":
    main()
