"""Local Hugging Face models through transformers: a model folder or a .gguf file.

This is the production path for Llama 7B with a LoRA adapter: on CUDA the base
model can load in 4-bit (bitsandbytes NF4) and a peft adapter folder is applied
on top. A .gguf file is dequantised by transformers once and saved as a model
folder under ``cache_dir``, so later starts load the folder directly.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from core.errors import BackendError
from core.models import Message

log = logging.getLogger(__name__)


def _fingerprint(path: Path) -> str:
    """Cheap identity of a file or folder: names, sizes and modification times."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


def nf4_config() -> Any:
    """4-bit NF4 with double quantisation and bfloat16 compute: how IMP loads an LLM in 4 bits,
    for serving and for QLoRA training alike (bitsandbytes, CUDA only)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


class TransformersGenerator:
    """A causal LM loaded with transformers, optionally 4-bit and with a LoRA adapter."""

    def __init__(self, path: Path, *, adapter: Path | None = None, device: str = "cpu",
                 load_in_4bit: bool = False, cache_dir: Path | None = None, context_tokens: int | None = None):
        self._path = Path(path)
        self._adapter = Path(adapter) if adapter else None
        self._device = device
        self._4bit = load_in_4bit
        self._cache_dir = cache_dir
        self._context_cfg = context_tokens
        self._model: Any = None
        self._tok: Any = None
        self._context = 0
        self._lock = threading.Lock()

    @cached_property
    def model_id(self) -> str:
        name = self._path.stem if self._path.suffix == ".gguf" else self._path.name
        ident = f"transformers:{name}@{_fingerprint(self._path)}"
        if self._adapter:
            ident += f"+lora:{self._adapter.name}@{_fingerprint(self._adapter)}"
        return ident

    @property
    def context_tokens(self) -> int:
        self.warm_up()
        return self._context

    def tokenizer(self) -> Any:
        self.warm_up()
        return self._tok

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._load()

    def _folder(self) -> Path:
        """The model folder to load: the configured one, or the cached conversion of a .gguf file."""
        if not self._path.exists():
            raise BackendError(f"LLM model not found: {self._path}")
        if self._path.suffix != ".gguf":
            return self._path
        if self._cache_dir is None:
            raise BackendError("loading a .gguf file needs a cache folder for its conversion")
        target = self._cache_dir / f"{self._path.stem}-{_fingerprint(self._path)}"
        if (target / "config.json").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to a transformers folder (once)", self._path.name)
        try:
            tok = AutoTokenizer.from_pretrained(str(self._path.parent), gguf_file=self._path.name)
            model = AutoModelForCausalLM.from_pretrained(str(self._path.parent), gguf_file=self._path.name)
        except Exception as e:
            raise BackendError(f"cannot read GGUF model {self._path}: {e}") from e
        # transformers dequantises GGUF blocks to plain tensors here (no GGUF kernels on CPU), but
        # keeps a GGUF quantizer attached, which refuses to save; the tensors themselves are ordinary.
        if any(type(p).__name__ != "Parameter" for p in model.parameters()):
            raise BackendError(f"{self._path.name} stayed in quantized blocks; cannot convert it to a folder")
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(target)  # a half-written conversion is never mistaken for a finished one
        return target

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = self._folder()
        kwargs: dict[str, Any] = {"local_files_only": True}
        if self._4bit:
            if not torch.cuda.is_available():
                raise BackendError("4-bit loading (IMP_LLM__LOAD_IN_4BIT) needs a CUDA GPU; none is available")
            kwargs["quantization_config"] = nf4_config()
            kwargs["device_map"] = {"": 0}
        elif self._device.startswith("cuda"):
            kwargs["dtype"] = torch.bfloat16
        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        except Exception as e:
            raise BackendError(f"cannot load LLM from {folder}: {e}") from e
        if not self._4bit:
            model = model.to(self._device)
        if self._adapter is not None:
            model = self._apply_adapter(model)
        model.eval()
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        window = int(getattr(model.config, "max_position_embeddings", 2048))
        self._context = min(window, self._context_cfg) if self._context_cfg else window
        self._tok, self._model = tok, model
        log.info("LLM loaded from %s (context %d tokens)", folder, self._context)

    def _apply_adapter(self, model: Any) -> Any:
        if not (self._adapter / "adapter_config.json").exists():
            raise BackendError(f"not a LoRA adapter folder (no adapter_config.json): {self._adapter}")
        try:
            from peft import PeftModel

            return PeftModel.from_pretrained(model, str(self._adapter), is_trainable=False)
        except Exception as e:
            raise BackendError(f"cannot apply LoRA adapter {self._adapter}: {e}") from e

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: list[Message]) -> dict:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if getattr(self._tok, "chat_template", None):
            enc = self._tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True,
                                                return_tensors="pt")
        else:  # a base model without a template: a plain transcript it can continue
            text = "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant:"
            enc = self._tok(text, return_tensors="pt")
        # Causal LMs take ids and mask only; some tokenizers add token_type_ids that generate() rejects.
        return {k: enc[k].to(self._model.device) for k in ("input_ids", "attention_mask") if k in enc}

    def _generate_kwargs(self, inputs: dict, max_tokens: int) -> dict:
        room = self._context - inputs["input_ids"].shape[1]
        if room < 1:
            raise BackendError(f"the prompt fills the model's {self._context}-token context")
        return {**inputs, "max_new_tokens": min(max_tokens, room), "do_sample": False,
                "pad_token_id": self._tok.pad_token_id}

    def complete(self, messages: list[Message], *, max_tokens: int) -> str:
        self.warm_up()
        import torch

        inputs = self._inputs(messages)
        with torch.inference_mode():
            out = self._model.generate(**self._generate_kwargs(inputs, max_tokens))
        return self._tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def stream(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        self.warm_up()
        import torch
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
        kwargs = self._generate_kwargs(inputs, max_tokens) | {"streamer": streamer}
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(**kwargs)
            except BaseException as e:  # surfaced to the reader below
                errors.append(e)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()
        if errors:
            raise BackendError(f"generation failed: {errors[0]}") from errors[0]
