"""What a test case is, as editors write it (the API's CaseCreate, one item of a YAML file), and the YAML exchange
format of an assistant's set:

```yaml
assistant: sales-assistant
cases:
  - id: rep-discount-limit           # optional; kept on import (same id = the same case, updated)
    question: What discount can a sales rep approve without a manager?
    history: []                      # optional earlier turns: [{role: user|assistant, content: ...}]
    facts: ["10%"]                   # the answer must state each (its words, or the same meaning)
    cite: [Pricing Rules]            # documents it must cite (title or file name)
    must_refuse: false               # true: it must say it does not know
    must_not: ["20%"]                # phrases it must not contain
    note: why this case exists
```
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError, field_validator

from backend.db.models import EvalCase
from backend.errors import Invalid

MAX_CASES = 500  # per assistant: a set this size already takes a long time to run
RESERVED_IDS = ("export", "import", "from-feedback")  # the words of the /cases/... routes
MAX_PROBLEMS = 100  # named in a refused file's 422: enough to fix it, without a megabyte of the same error
# libyaml refuses nesting past its limit with a YAMLError (the pure-Python loader recurses into a RecursionError)
# and parses a large set several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELDS = ("question", "history", "facts", "cite", "must_refuse", "must_not", "note")


# What the schema says of the text fields (the validators below refuse NUL with the reason): no U+0000, and for the
# question and phrases a character that is not a space.
NO_NUL = {"pattern": r"^[^\x00]*$"}
NOT_BLANK = {"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"}
# A fact, a document or a forbidden phrase: a few words (an empty one would check nothing).
Phrase = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"\S"),
                   Field(json_schema_extra=NOT_BLANK)]


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store U+0000 in text: refused here with the reason rather than a 500 from the database.
    if "\x00" in value:
        raise ValueError("the text contains a NUL character (U+0000): remove it")
    return value


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=8_000, json_schema_extra=NO_NUL)

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return _no_nul(value)


class CaseCreate(BaseModel):
    """A case as written (the id is the server's unless an import keeps its own)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field ("fact") is a 422, not a silently empty check

    # `\S`: not only spaces (the schema says so too, so a client's validation agrees with the server's).
    question: str = Field(min_length=1, max_length=4_000, pattern=r"\S", json_schema_extra=NOT_BLANK)
    history: list[Turn] = Field(default_factory=list, max_length=20)
    facts: list[Phrase] = Field(default_factory=list, max_length=20,
                                description="what a good answer states (a phrase; matched by words or meaning)")
    cite: list[Phrase] = Field(default_factory=list, max_length=10,
                               description="documents a good answer cites (title or file name)")
    must_refuse: StrictBool = Field(False, description="a good answer says it does not know")
    must_not: list[Phrase] = Field(default_factory=list, max_length=20,
                                   description="phrases a good answer does not contain (case-insensitive)")
    note: str = Field("", max_length=2_000, json_schema_extra=NO_NUL)

    @field_validator("facts", "cite", "must_not")
    @classmethod
    def _phrases(cls, value: list[str]) -> list[str]:
        return [_no_nul(v.strip()) for v in value]

    @field_validator("question")
    @classmethod
    def _question(cls, value: str) -> str:
        return _no_nul(value.strip())

    @field_validator("note")
    @classmethod
    def _note(cls, value: str) -> str:
        return _no_nul(value)



class CaseFile(CaseCreate):
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not ID_RE.match(value):
            raise ValueError("an id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} names a route of the API: choose another id")
        return value


def new_id() -> str:
    return secrets.token_hex(6)


def values_of(case: CaseCreate) -> dict[str, Any]:
    """The row's values of a written case (the history as plain dicts)."""
    data = case.model_dump()
    data.pop("id", None)
    return {k: data[k] for k in FIELDS}


def checks_something(row: EvalCase | dict[str, Any]) -> bool:
    """A case with no expectation yet (one made from feedback, before the editor says what a good answer does)
    would always pass: runs leave it out (as `skipped`) rather than count it."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    return bool(get("facts") or get("cite") or get("must_refuse") or get("must_not"))


def public(row: EvalCase) -> dict[str, Any]:
    return {"id": row.id, "assistant": row.assistant, **{k: getattr(row, k) for k in FIELDS},
            "checks_nothing": not checks_something(row), "source": row.source, "created_by": row.created_by,
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "updated_at": row.updated_at.isoformat() if row.updated_at else None}


def snapshot(row: EvalCase) -> dict[str, Any]:
    """The case as a run evaluates it (kept with the result: a later edit does not rewrite history)."""
    return {"id": row.id, **{k: getattr(row, k) for k in FIELDS}}


def to_yaml(assistant: str, rows: list[EvalCase]) -> str:
    cases = []
    for row in rows:
        item: dict[str, Any] = {"id": row.id, "question": row.question}
        for name in FIELDS[1:]:
            value = getattr(row, name)
            if value not in ([], "", False, None):
                item[name] = value
        cases.append(item)
    return yaml.safe_dump({"assistant": assistant, "cases": cases}, sort_keys=False, allow_unicode=True, width=110)


def parse_yaml(text: str, *, assistant: str) -> list[CaseFile]:
    """The cases of a YAML set for `assistant`; every problem at once, each naming the case (Invalid, 422)."""
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as exc:
        raise Invalid(f"the file is not valid YAML: {str(exc)[:1000]}", code="invalid_yaml") from None
    except RecursionError:
        raise Invalid("the file is nested too deeply to be a test set", code="invalid_yaml") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise Invalid("the file must be a mapping with `cases:` (a list of cases), e.g. "
                      "`cases: [{question: ..., facts: [...]}]`", code="invalid_yaml")
    named = data.get("assistant", assistant)
    if not isinstance(named, str):
        raise Invalid(f"`assistant:` must be the assistant's name ({assistant!r}), or left out", code="invalid_yaml")
    if named != assistant:
        raise Invalid(f"the file is the set of {named!r}, not of {assistant!r}: import it for {named!r}, or change "
                      f"its `assistant:`", code="wrong_assistant")
    if len(data["cases"]) > MAX_CASES:
        raise Invalid(f"the file has {len(data['cases'])} cases; the limit is {MAX_CASES}", code="too_many_cases")
    problems: list[dict[str, str]] = []
    out: list[CaseFile] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["cases"], 1):
        where = f"cases[{i}]"
        try:
            case = CaseFile.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problems.append({"where": f"{where}.{loc}" if loc else where, "problem": _plain(err)})
            continue
        if case.id is not None:
            if case.id in seen:
                problems.append({"where": f"{where}.id", "problem": f"id {case.id!r} is used twice in the file"})
            seen.add(case.id)
        out.append(case)
    if problems:
        raise Invalid(f"{len(problems)} problem(s) in the file; nothing was imported: "
                      + "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5]),
                      code="invalid_cases", extra={"problems": problems[:MAX_PROBLEMS]})
    return out


# pydantic's words for the mistakes a hand-written YAML file makes, with the fix in the file's own syntax.
_FIXES = {
    "list_type": "write a list: one `- item` per line, or [\"item\"] (even for a single one)",
    "bool_type": "write true or false", "bool_parsing": "write true or false",
    "extra_forbidden": "not a field of a case (question, history, facts, cite, must_refuse, must_not, note, id)",
    "missing": "missing: every case needs it",
}


def _plain(err: dict[str, Any]) -> str:
    fix = _FIXES.get(err["type"])
    return f"{err['msg']}: {fix}" if fix else err["msg"]

