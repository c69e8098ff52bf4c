"""All configuration from the environment, in one pydantic-settings class. No I/O at import."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    # An empty variable (`ATRIUM_LOCAL_MODEL_PATH=` uncommented from .env.example) means "unset": the default.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_ignore_empty=True)

    # Storage
    data_dir: Path = Field(Path("./data"), alias="ATRIUM_DATA_DIR")
    database_url: str | None = Field(None, alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    config_dir: Path = Field(REPO_ROOT / "config", alias="ATRIUM_CONFIG_DIR")
    prompts_dir: Path = Field(REPO_ROOT / "prompts", alias="ATRIUM_PROMPTS_DIR")
    # Where prompt versions live: files (prompts_dir) or database; unset = database with PostgreSQL, else files.
    prompt_store: Literal["files", "database"] | None = Field(None, alias="ATRIUM_PROMPT_STORE")
    # The demo test cases (evals/<tenant>/<assistant>.yaml): each assistant's empty set is seeded from them once.
    evals_dir: Path = Field(REPO_ROOT / "evals", alias="ATRIUM_EVALS_DIR")

    # Identity
    oidc_issuer: str | None = Field(None, alias="OIDC_ISSUER")
    oidc_client_id: str | None = Field(None, alias="OIDC_CLIENT_ID")
    oidc_client_secret: str | None = Field(None, alias="OIDC_CLIENT_SECRET")
    oidc_api_audience: str | None = Field(None, alias="OIDC_API_AUDIENCE")
    oidc_scopes: str = Field("openid profile email", alias="OIDC_SCOPES")
    dev_login: bool | None = Field(None, alias="ATRIUM_DEV_LOGIN")
    # Bearer JWTs: clock leeway for exp/nbf (at most 60 s); how often an unknown `kid` may refetch the JWKS.
    oidc_leeway_s: int = Field(30, alias="OIDC_LEEWAY_S", ge=0, le=60)
    oidc_jwks_min_refresh_s: float = Field(10.0, alias="OIDC_JWKS_MIN_REFRESH_S", ge=0)
    chainlit_auth_secret: str | None = Field(None, alias="CHAINLIT_AUTH_SECRET")
    # A browser session's lifetime: an IdP's group changes (leaving a department) reach Atrium at the next
    # sign-in, so this bounds how long a removed member keeps access (Chainlit's default was 15 days).
    session_hours: float = Field(12.0, alias="ATRIUM_SESSION_HOURS", gt=0, le=720)
    chainlit_url: str | None = Field(None, alias="CHAINLIT_URL")
    # Repeated denials from one subject or IP within the window raise a suspicious_access event.
    suspicious_denials: int = Field(10, alias="ATRIUM_SUSPICIOUS_DENIALS")
    suspicious_window_s: int = Field(300, alias="ATRIUM_SUSPICIOUS_WINDOW_S")
    # Refusals from one source (user, else IP) in one tenant for one reason and route within this many seconds are
    # one audit row with a count: a flood of refused requests cannot fill the audit log.
    audit_denial_window_s: int = Field(60, alias="ATRIUM_AUDIT_DENIAL_WINDOW_S", ge=1, le=86400)
    # Verified API keys are remembered this long (0 = check the database on every request). A revocation
    # through this replica's API applies at once; one made by the CLI or another replica within this time.
    api_key_cache_s: float = Field(5.0, alias="ATRIUM_API_KEY_CACHE_SECONDS", ge=0, le=300)
    # Days a new API key lives when its creator does not say (0 = no expiry); a key made with a key never
    # outlives it. Keys made before expiry existed keep none.
    api_key_days: int = Field(90, alias="ATRIUM_API_KEY_DAYS", ge=0, le=3650)

    # Knowledge
    # Unset: pgvector when DATABASE_URL is PostgreSQL (shared by every replica), else sqlite (see _default_store).
    vector_store: Literal["sqlite", "pgvector", "pinecone"] = Field("sqlite", alias="VECTOR_STORE")
    pinecone_api_key: str | None = Field(None, alias="PINECONE_API_KEY")
    pinecone_index_host: str | None = Field(None, alias="PINECONE_INDEX_HOST")
    max_upload_mb: float = Field(20.0, alias="ATRIUM_MAX_UPLOAD_MB")
    max_upload_files: int = Field(20, alias="ATRIUM_MAX_UPLOAD_FILES", ge=1, le=1000)  # per upload request
    embedding_model: str = Field("local/all-MiniLM-L6-v2", alias="ATRIUM_EMBEDDING_MODEL")
    # hybrid = dense + keyword (FTS5) fused by RRF; dense = vectors only (bench/README.md compares them)
    retrieval_mode: Literal["hybrid", "dense"] = Field("hybrid", alias="ATRIUM_RETRIEVAL_MODE")
    # Passages below this cosine similarity are not used (unless they contain most of the question's words,
    # see knowledge/retrieval.is_relevant); with none left the chat says it does not know.
    retrieval_min_score: float = Field(0.4, alias="ATRIUM_RETRIEVAL_MIN_SCORE")
    # Follow-up turns: the retrieval query. auto = rewritten by the `fast` tier when it is a provider model,
    # else last two questions + new message; model = always the internal tier's model; off = the message as is.
    query_rewrite: Literal["auto", "model", "off"] = Field("auto", alias="ATRIUM_QUERY_REWRITE")
    # Chat history titles: auto = written by the `fast` tier when it is a provider model, else the first message;
    # model = always the internal tier's model; off = the first message.
    conversation_titles: Literal["auto", "model", "off"] = Field("auto", alias="ATRIUM_CONVERSATION_TITLES")
    chunk_tokens: int = Field(200, alias="ATRIUM_CHUNK_TOKENS")
    chunk_overlap: int = Field(40, alias="ATRIUM_CHUNK_OVERLAP")
    embed_batch: int = Field(32, alias="ATRIUM_EMBED_BATCH")
    ingest_worker: bool = Field(True, alias="ATRIUM_INGEST_WORKER")  # run the ingestion worker in the app
    ingest_lease_s: float = Field(60.0, alias="ATRIUM_INGEST_LEASE_S")

    # Models
    model_fast: str | None = Field(None, alias="ATRIUM_MODEL_FAST")
    model_smart: str | None = Field(None, alias="ATRIUM_MODEL_SMART")
    model_local: str | None = Field(None, alias="ATRIUM_MODEL_LOCAL")
    llm_threads: int = Field(1, alias="ATRIUM_LLM_THREADS")
    llm_context: int = Field(2048, alias="ATRIUM_LLM_CONTEXT")
    local_model_path: Path | None = Field(None, alias="ATRIUM_LOCAL_MODEL_PATH")

    # Governance (quotas, rate limits, response cache): in-process, or Redis when REDIS_URL is set
    response_cache: bool = Field(True, alias="ATRIUM_RESPONSE_CACHE")
    cache_ttl_s: int = Field(86400, alias="ATRIUM_CACHE_TTL_S")
    redis_prefix: str = Field("atrium", alias="ATRIUM_REDIS_PREFIX")  # key prefix (several apps, one Redis)
    budget_warning_ratio: float = Field(0.8, alias="ATRIUM_BUDGET_WARNING_RATIO")
    # Durable turns (issue 16): a process renews its heartbeat and its quota reservations every lease/3; one that
    # died is taken for dead after a lease (its turns marked interrupted, its reservations released).
    lease_s: float = Field(60.0, alias="ATRIUM_LEASE_S", ge=1, le=3600)
    # While an answer streams, its tokens so far are written at most this often (what a killed process leaves).
    turn_progress_s: float = Field(2.0, alias="ATRIUM_TURN_PROGRESS_S", gt=0, le=600)
    # The usage writer waits this long after a row arrives for more to join its batch (one commit for them all);
    # each caller's answer waits for its row's commit, so at most this much longer. 0: no wait.
    usage_linger_ms: float = Field(2.0, alias="ATRIUM_USAGE_LINGER_MS", ge=0, le=50)

    # Integrations
    dify_base_url: str | None = Field(None, alias="DIFY_BASE_URL")

    # Observability (issue 18). GET /metrics answers the Prometheus scraper that sends this bearer token; unset:
    # no metrics are collected and /metrics is a 404. Tracing follows the standard OTEL_* variables (tracing.py).
    metrics_token: str | None = Field(None, alias="ATRIUM_METRICS_TOKEN", min_length=16, max_length=512)
    # `atrium worker` serves its own /metrics (same token) here; 0: not served. 127.0.0.1 unless told (the
    # Kubernetes manifests listen on 0.0.0.0 for the cluster's Prometheus).
    worker_metrics_port: int = Field(9464, alias="ATRIUM_WORKER_METRICS_PORT", ge=0, le=65535)
    worker_metrics_host: str = Field("127.0.0.1", alias="ATRIUM_WORKER_METRICS_HOST", min_length=1)
    # LiteLLM's own logging callbacks by name (comma-separated, e.g. `langfuse`; each reads its own variables,
    # e.g. LANGFUSE_PUBLIC_KEY, and needs its package installed). Empty: none (LiteLLM's logging work is skipped).
    litellm_callbacks: str = Field("", alias="ATRIUM_LITELLM_CALLBACKS")

    # Serving
    public_url: str | None = Field(None, alias="ATRIUM_PUBLIC_URL")
    log_level: str = Field("INFO", alias="ATRIUM_LOG_LEVEL")
    # Bodies other than uploads (JSON): 4 MiB holds a chat turn with 20 earlier messages of 20,000 characters
    # even when every character arrives \u-escaped (6 bytes). Checked before parsing or authentication.
    max_body_kb: int = Field(4096, alias="ATRIUM_MAX_BODY_KB", ge=16)
    max_header_kb: int = Field(64, alias="ATRIUM_MAX_HEADER_KB", ge=8, le=16384)  # request line + headers
    # A request's head is due this long after the connection opened or the previous response ended (slowloris).
    header_timeout_s: float = Field(30, alias="ATRIUM_HEADER_TIMEOUT_S", gt=0, le=3600)
    # Chat messages one user may send through one process in a minute (the socket refuses more, before anything
    # is stored): a message that calls no model (too long, a note with files) is not counted by the quotas.
    chat_messages_per_minute: int = Field(60, alias="ATRIUM_CHAT_MESSAGES_PER_MINUTE", ge=1, le=10_000)
    # Peers whose X-Forwarded-For/-Proto are believed (IPs, CIDRs, comma-separated); empty: nobody's.
    trusted_proxies: str = Field("", alias="ATRIUM_TRUSTED_PROXIES")

    # Scale-out (issue 16)
    # false: this process only checks that the schema is current; a migration Job (`atrium migrate`) applies it.
    migrate_on_start: bool = Field(True, alias="ATRIUM_MIGRATE_ON_START")
    # true: one pod only, so PostgreSQL may go with the embedded vector store and in-process quota counters.
    single_node: bool = Field(False, alias="ATRIUM_SINGLE_NODE")

    # Deployments per tenant group (issue 17): the deployment groups of tenants.yaml this process serves,
    # comma-separated; unset = every group. The tenants of other groups do not exist for this process.
    deployment_groups: str | None = Field(None, alias="ATRIUM_DEPLOYMENT_GROUPS")
    # This process's name in /healthz (e.g. the pod's name), so a test or an operator behind a proxy can tell
    # which process answered; unset: a random id made once per process.
    instance_id: str | None = Field(None, alias="ATRIUM_INSTANCE_ID", max_length=200)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        proxy_list(value)  # ValueError -> a configuration error naming the entry
        return value

    @model_validator(mode="after")
    def _default_store(self) -> Settings:
        # An embedded store on a shared PostgreSQL would give every replica its own vectors: default to pgvector.
        if "vector_store" not in self.model_fields_set and self.uses_postgres:
            self.vector_store = "pgvector"
        return self

    @property
    def uses_postgres(self) -> bool:
        return self.sql_url.startswith("postgresql")

    @property
    def trusted_proxy_list(self) -> list[str]:
        return proxy_list(self.trusted_proxies)

    @property
    def sql_url(self) -> str:
        if self.database_url:
            return _normalise_db_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'atrium.db').resolve()}"

    @property
    def prompt_store_kind(self) -> Literal["files", "database"]:
        """Replicas share PostgreSQL but not a folder that supports flock and hard links (gcsfuse does not)."""
        if self.prompt_store:
            return self.prompt_store
        return "database" if self.sql_url.startswith("postgresql") else "files"

    @property
    def password_login_enabled(self) -> bool:
        """Demo password login is the embedded default; with an IdP it needs an explicit opt-in."""
        if self.oidc_issuer:
            return bool(self.dev_login)
        return self.dev_login is not False

    @property
    def litellm_callback_list(self) -> list[str]:
        return [name.strip() for name in self.litellm_callbacks.split(",") if name.strip()]

    def model_override(self, tier: str) -> str | None:
        return {"fast": self.model_fast, "smart": self.model_smart, "local": self.model_local}.get(tier)


def proxy_list(value: str) -> list[str]:
    """IPs and CIDRs, comma-separated (`*`: any peer, only behind a proxy every connection must pass)."""
    out = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is neither an IP address nor a CIDR range (e.g. 10.0.0.0/8)") from None
        out.append(item)
    return out


def _normalise_db_url(url: str) -> str:
    # Operators paste libpq-style URLs; SQLAlchemy needs the driver named.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@lru_cache
def get_settings() -> Settings:
    load_env_file()
    return Settings()


def load_env_file(path: Path = Path(".env")) -> bool:
    """Also put `.env` (of the working directory) into the process environment: provider keys and bases
    (ANTHROPIC_API_KEY, VLLM_API_BASE, ...) are read from there by LiteLLM and models.yaml, not by Settings.
    A variable already set in the real environment wins."""
    if not path.is_file():
        return False
    from dotenv import load_dotenv

    return load_dotenv(path, override=False)


SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|_KEY$", re.IGNORECASE)  # variables whose values are not echoed
SECRETS = frozenset({"OIDC_CLIENT_SECRET", "CHAINLIT_AUTH_SECRET", "PINECONE_API_KEY", "ATRIUM_METRICS_TOKEN"})
_URL_PASSWORD = re.compile(r"(//[^/@\s:]*:)[^/@\s]*@")  # postgresql://user:PASSWORD@host


def describe_invalid(exc: ValidationError) -> str:
    """One line per bad variable, naming it, what was set and what it takes (instead of a traceback)."""
    lines = ["invalid configuration (environment or .env):"]
    for err in exc.errors():
        name = ".".join(str(p) for p in err.get("loc", ())) or "?"
        value = err.get("input")
        # This line goes to the logs (stderr is the pod's log), and a token refused for being short is most of the
        # one set next: a secret's value is not repeated, nor the whole input of an error of no one variable (it
        # holds them all); a URL's password is masked.
        if name == "?":
            shown = "<hidden>"
        elif (SECRET_NAME.search(name) or name in SECRETS) and isinstance(value, str):
            shown = f"<{len(value)} characters, not shown>"
        elif name in SECRETS:
            shown = "<hidden>"
        else:
            shown = _URL_PASSWORD.sub(r"\1***@", repr(value))
        lines.append(f"  {name}={shown}: {err.get('msg')}")
    return "\n".join(lines)
