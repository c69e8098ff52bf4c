"""SQLModel tables. Every tenant-owned row carries `tenant`; repositories filter on it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChatTurn(SQLModel, table=True):
    __tablename__ = "chat_turn"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    tenant: str = Field(index=True)
    subject: str = Field(index=True)
    channel: str = "ui"  # ui | api | openai | studio | eval | internal
    assistant: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    prompt_label: str | None = None
    model: str | None = None
    tier: str | None = None
    route_reason: str | None = None
    fallback_from: str | None = None
    downgraded_from: str | None = None  # the tier a spent budget took the turn down from (on_budget: downgrade)
    downgrade_reason: str | None = None  # the limit that refused the tier routed (QuotaExceeded.limit)
    allowance: str | None = None  # the member allowance it was admitted under: default, an override's name, raised
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    cached: bool = False
    # How the answer was made (chat/answers.py): grounded | generative | checked | fallback; and the grounding
    # check's score (the share of its sentences the cited passages support; 1.0 for a grounded answer).
    answer_mode: str | None = None
    grounding: float | None = None
    outcome: str = "ok"  # ok | error | refused | quota | cancelled | interrupted
    error: str | None = None
    chunk_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    # Durable turns (governance/usage.py): written when the model call starts (`streaming`, by `owner`), then
    # `completed` or `interrupted`; `turn_key` makes every write of the row idempotent (an outbox retry).
    turn_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True, unique=True))
    status: str = Field(default="completed", sa_column=Column(String(16), nullable=False, index=True,
                                                              server_default="completed", default="completed"))
    owner: str | None = None  # the process answering it (governance/leases.py): host:pid:nonce
    updated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(index=True)  # login, denied, key_created, key_revoked, suspicious_access, prompt_*, ...
    subject: str | None = Field(default=None, index=True)
    tenant: str | None = Field(default=None, index=True)
    route: str | None = None
    ip: str | None = Field(default=None, index=True)
    status: int | None = None
    reason: str | None = None
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    # Refusals are grouped (governance/audit.py): one row per source, tenant, reason and route within a window,
    # `count` of them, the first at created_at (with its detail), the latest at last_at. Other events: 1, None.
    count: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1", default=1))
    last_at: datetime | None = None
    group_key: str | None = Field(default=None, sa_column=Column(String, nullable=True, unique=True))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True)  # public key id, also the visible prefix of the token
    tenant: str = Field(index=True)
    name: str = ""
    key_hash: str  # sha256 of the secret; the secret itself is never stored
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    created_by: str | None = None  # who made it: a subject, "cli", or "key:<id>" for a key made by a key
    # The person at the root of the chain (a key made by a key belongs to its parent's owner): the key acts
    # for them, and the four-eyes rule counts them. "cli" for keys the CLI made, None when nobody was recorded.
    owner: str | None = Field(default=None, index=True)
    parent_key_id: str | None = Field(default=None, index=True)  # revoking the parent revokes this key
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None  # never later than the parent's; None = no expiry


# -- knowledge base (issue 4) -----------------------------------------------------------------------------


class KbDocument(SQLModel, table=True):
    """One uploaded document and its ingestion job (the job state lives here, so it survives restarts)."""

    __tablename__ = "kb_document"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    kb: str = "default"
    title: str
    filename: str
    content_type: str  # detected from the bytes: pdf | docx | html | markdown | text
    content_hash: str = Field(index=True)  # sha256 of the bytes: same content = same document
    size_bytes: int = 0
    # queued | parsing | embedding | ready | failed | deleting
    status: str = Field(default="queued", index=True)
    progress: float = 0.0  # 0..1
    error: str | None = None
    chunk_total: int = 0
    chunks_done: int = 0  # checkpoint: chunks [0, chunks_done) are in the vector store
    embedding_model: str | None = None
    replaces: str | None = None  # the older version this upload supersedes once it is ready
    attempts: int = 0
    claimed_by: str | None = None  # worker lease: host:pid:nonce
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    claim_seq: int | None = Field(default=None, sa_type=BigInteger)  # claims' order: round-robin (documents.py)
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    doc_metadata: dict = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False,
                                                                       default=dict))


class KbBlob(SQLModel, table=True):
    """The uploaded bytes, kept so an interrupted job can resume and nothing a user sent is lost."""

    __tablename__ = "kb_blob"

    document_id: str = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class KbEmbeddingModel(SQLModel, table=True):
    """Which embedding model a tenant's vectors came from; vectors of two models are never mixed."""

    __tablename__ = "kb_embedding_model"

    tenant: str = Field(primary_key=True)
    model: str
    dimension: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


# -- conversations (chat history in the sidebar) ------------------------------------------------------------


class ChatUser(SQLModel, table=True):
    """The claims of a chat user's latest login: Chainlit reloads its user from here on every request, and the
    principal is re-derived from these claims (never from anything the browser sends)."""

    __tablename__ = "chat_user"

    identifier: str = Field(primary_key=True)  # the principal's subject
    display_name: str | None = None
    provider: str | None = None  # password | oidc
    claims: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Conversation(SQLModel, table=True):
    """One chat thread: one user, one tenant, one assistant, fixed when the thread is created."""

    __tablename__ = "conversation"

    id: str = Field(primary_key=True)  # Chainlit's thread id
    tenant: str = Field(index=True)
    subject: str = Field(index=True)  # the owner; nobody else can list, read, rename or delete it
    assistant: str
    label: str = "production"  # production | staging
    title: str | None = None
    title_source: str | None = None  # first_message | model | user (a user's own name is never overwritten)
    deleted: bool = False  # kept as a tombstone: another open tab must not bring a deleted conversation back
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True), index=True)


class ConversationStep(SQLModel, table=True):
    """A message of a conversation (user or assistant), with the user's feedback on it."""

    __tablename__ = "conversation_step"

    id: str = Field(primary_key=True)  # Chainlit's step id
    conversation_id: str = Field(index=True)
    tenant: str = Field(index=True)
    type: str  # user_message | assistant_message | system_message
    name: str = ""
    output: str = ""
    parent_id: str | None = None
    turn_id: int | None = None  # the chat_turn of an answer: its prompt version and model, for feedback reports
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    feedback_value: int | None = None  # 1 = helpful, 0 = not helpful
    feedback_comment: str | None = None


class ConversationElement(SQLModel, table=True):
    """A text side panel of a message (an answer's cited passage), so a reopened answer's sources open again.
    Only text is stored, in this table: never a file, never a path."""

    __tablename__ = "conversation_element"

    id: str = Field(primary_key=True)  # Chainlit's element id
    conversation_id: str = Field(index=True)
    tenant: str = Field(index=True)
    for_id: str | None = None  # the message (step) it belongs to
    name: str = ""  # the label the message text refers to, e.g. "[1] Pricing Rules, p.3"
    display: str = "side"  # side | inline | page
    content: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


# -- browser sessions (issue 14) ----------------------------------------------------------------------------


class BrowserSession(SQLModel, table=True):
    """One sign-in to the browser (its token carries `sid` and `signed_in_at`). The token is refused once the
    row is revoked (signed out, or ended by an admin); rows past the session's maximum age are deleted."""

    __tablename__ = "browser_session"

    sid: str = Field(primary_key=True)  # made by the server at sign-in
    subject: str = Field(index=True)
    provider: str | None = None  # password | oidc
    signed_in_at: float = Field(index=True)  # UTC epoch seconds, exactly as in the token
    revoked_at: float | None = None
    revoked_reason: str | None = None  # logout | ended
    revoked_by: str | None = None  # who ended it (the subject itself for a sign-out)


class BrowserSessionCutoff(SQLModel, table=True):
    """An admin ended a subject's sessions: every session of theirs signed in at or before `ended_at` is over,
    logged in `browser_session` or not."""

    __tablename__ = "browser_session_cutoff"

    subject: str = Field(primary_key=True)
    ended_at: float = Field(index=True)  # UTC epoch seconds
    ended_by: str | None = None


# -- prompt versions in the database (issue 16) -------------------------------------------------------------


class PromptVersionRow(SQLModel, table=True):
    """One immutable prompt version, stored as its file's text (front matter + body): the file layout is the
    exchange format, so export writes these bytes back unchanged. The unique key makes a number exclusive."""

    __tablename__ = "prompt_version"
    __table_args__ = (UniqueConstraint("tenant", "assistant", "version", name="uq_prompt_version"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    assistant: str
    version: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    author: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class PromptLabelRow(SQLModel, table=True):
    """Where a label points now; moved only together with its history row, in one transaction."""

    __tablename__ = "prompt_label"

    tenant: str = Field(primary_key=True)
    assistant: str = Field(primary_key=True)
    label: str = Field(primary_key=True)
    version: int


class PromptLabelMoveRow(SQLModel, table=True):
    """A label's history (labels.yaml `history:`): who moved it, when, from which version to which."""

    __tablename__ = "prompt_label_move"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    assistant: str
    label: str
    from_version: int | None = None
    to_version: int
    who: str | None = None
    at: str = ""  # as labels.yaml has it ("2026-11-24T10:00:00Z"), so export/import round-trips exactly


class PromptSeedRow(SQLModel, table=True):
    """Marks the database as seeded from a prompts folder; its primary key lets one replica of several starting
    at once seed it (the others wait for that transaction, then find the row)."""

    __tablename__ = "prompt_seed"

    name: str = Field(primary_key=True)
    source: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


# -- durable turns (issue 16) --------------------------------------------------------------------------------


class ProcessLease(SQLModel, table=True):
    """A live process's heartbeat (the database's clock): a `streaming` turn whose owner stopped beating for a lease
    is marked interrupted by any other process (governance/leases.py)."""

    __tablename__ = "process_lease"

    owner: str = Field(primary_key=True)
    host: str = ""
    pid: int = 0
    beat: float = Field(index=True)  # epoch seconds by the database's clock


# -- member budgets (issue 20) -----------------------------------------------------------------------------


class MemberAllowance(SQLModel, table=True):
    """A tenant admin raised one member's allowance for one month (the latest row per member and month applies);
    read on every admission, so every replica applies it at once (governance/allowances.py)."""

    __tablename__ = "member_allowance"
    __table_args__ = (Index("ix_member_allowance_member", "tenant", "subject", "month"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str
    subject: str
    month: str = Field(sa_column=Column(String(6), nullable=False))  # YYYYMM (UTC)
    tokens_per_day: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    monthly_budget_usd: float | None = None
    granted_by: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


# -- evaluations (issue 19) ---------------------------------------------------------------------------------


class EvalCase(SQLModel, table=True):
    """One test case of an assistant: a question (with earlier turns, optionally) and what a good answer does."""

    __tablename__ = "eval_case"

    # An id is unique within its set (made by the server, or kept from an imported file): two tenants' files may
    # both name a case `discount-cap`.
    tenant: str = Field(primary_key=True)
    assistant: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    question: str = Field(sa_column=Column(Text, nullable=False))
    history: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    facts: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    cite: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    must_refuse: bool = False
    must_not: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    note: str = ""
    source: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # {kind: feedback, turn_id}
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class EvalRun(SQLModel, table=True):
    """One evaluation of a prompt version (or an unsaved draft) over an assistant's cases, on one tier, against the
    knowledge base as it was (`kb_version`). Its per-case results are EvalResult rows: a run resumes where they end."""

    __tablename__ = "eval_run"
    __table_args__ = (Index("ix_eval_run_assistant", "tenant", "assistant", "created_at"),)

    id: str = Field(primary_key=True)
    tenant: str
    assistant: str
    prompt_version: int | None = None  # None: an unsaved draft (`draft`)
    draft: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # {body, config}
    tier: str | None = None  # asked for (None: the prompt's or the tenant's default decides)
    model: str | None = None  # the model(s) that answered, as recorded
    kb_version: str = ""  # the knowledge service's fingerprint of the tenant's ready documents
    case_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    skipped: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    status: str = Field(default="queued", sa_column=Column(String(16), nullable=False, default="queued"))
    total: int = 0
    done: int = 0
    passed: int = 0
    score: float | None = None  # passed / done, 0..1
    tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int | None = None  # the median per case
    judge: str | None = None  # the judge model's name when one graded facts and groundedness
    owner: str | None = None  # the process running it (governance/leases.py): a dead owner's run may be resumed
    started_by: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    error: str | None = None


class EvalResult(SQLModel, table=True):
    """One case's answer in one run, and each check's verdict."""

    __tablename__ = "eval_result"
    __table_args__ = (UniqueConstraint("run_id", "case_id", name="uq_eval_result"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    case_id: str
    tenant: str = Field(index=True)
    case: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))  # as it was run
    answer: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    citations: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    checks: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    passed: bool = False
    model: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    turn_id: int | None = None  # the usage row (channel eval)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
