"""What the tenant console says in words: a refusal's reason, a failed document's fix, an API key scope's meaning.

Plain data and two small functions: the codes are the ones the guard, the key service and the ingestion record
(backend/auth/guard.py, backend/api/deps.py, backend/knowledge/ingest.py); an unknown code falls back to the
message the refusal itself carries, which is always written for people."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "chat": "ask the department's assistants (the chat API and the OpenAI-compatible API)",
    "retrieval": "search the knowledge base and list its documents (Dify's External Knowledge API too)",
    "ingest": "add and delete documents in the knowledge base",
    "prompts:read": "read the assistants' prompts and their versions",
    "prompts:write": "write prompt versions and move labels (what the studio does)",
    "admin": "everything a tenant admin does by API: keys, usage, audit, ending sessions",
}

DENIALS: dict[str, str] = {
    "tenant_mismatch": "Someone tried to reach this department without being a member of it.",
    "missing_role": "A member tried something their role does not allow (e.g. a member opening the console).",
    "missing_scope": "An API key was used for something its scopes do not allow.",
    "not_authenticated": "A request came without a valid sign-in or key.",
    "tenant_header_mismatch": "A request named one department in its URL and another in its X-Tenant-ID header.",
    "missing_tenant_header": "A token request did not say which department it was for (X-Tenant-ID).",
    "tenant_header_repeated": "A request named its department more than once.",
    "revoked_api_key": "A revoked API key was used: whoever still holds it needs a new one.",
    "expired_api_key": "An expired API key was used: whoever still holds it needs a new one.",
    "unknown_api_key": "A key that does not exist was tried.",
    "malformed_api_key": "Something that is not an API key was sent as one.",
    "served_elsewhere": "The request reached a server that does not serve this department.",
    "session_ended": "A browser session that had ended (signed out, or ended by an admin) was used.",
    "route_blocked": "A feature that is switched off was asked for.",
    "event_blocked": "A chat feature that is switched off was asked for.",
    "approval_required": "A release to production waited for another admin's approval.",
    "release_gate_override": "Someone who is not a tenant admin tried to release past the release gate.",
    "message_too_long": "A chat message far over the length limit was refused.",
    "cross_site_request": "Another web site tried to act with a member's browser session: refused.",
}

KINDS: dict[str, str] = {
    "denied": "refusals", "documents_uploaded": "documents added", "document_deleted": "documents deleted",
    "documents_reindexed": "re-index runs", "key_created": "API keys created", "key_revoked": "API keys revoked",
    "prompt_version_created": "prompt versions written", "prompt_label_moved": "prompt releases",
    "sessions_ended": "sessions ended", "admin_access": "operators' reads",
    "release_gate_refused": "promotions stopped by the release gate",
    "release_gate_overridden": "release gate overridden",
}


# What to do about a file an upload refused, by the refusal's code (backend/knowledge/parse.py, service.py).
REFUSAL_FIXES: dict[str, str] = {
    "unsupported_type": "Atrium reads PDF, Word (.docx), text, Markdown and HTML: save the file as one of those and "
                        "upload it again.",
    "type_mismatch": "The file's content does not match its extension: save it again from its program with the "
                     "right extension, and upload that.",
    "file_too_large": "Split it into smaller files and upload those.",
    "empty_file": "The file is empty: upload the file that has the text.",
    "invalid_filename": "Rename the file (letters, digits, spaces, dots, - or _) and upload it again.",
    "corrupt_pdf": "The file is damaged: open it in its program, save it again, and upload the new copy.",
    "corrupt_docx": "The file is damaged: open it in Word, save it again, and upload the new copy.",
    "encrypted_pdf": "The file is password-protected: save a copy without the password and upload that.",
    "zip_bomb": "The file unpacks to far more than its size: save it again from its program, or split it.",
    "no_text": "The file has no text to read (a scanned PDF or an image): export it with its text, or run it "
               "through OCR, and upload it again.",
    "invalid_kb": "Name the knowledge base with letters, digits, - or _ (up to 63), and upload again.",
    "invalid_metadata": "Correct the metadata the reason names, and upload again.",
}
REFUSAL_FIX = "Correct what the reason says and upload the file again."


def denial_words(reason: str | None, detail: dict) -> str:
    """A refusal in a sentence, then what it said to the caller (the refusal's own message)."""
    general = DENIALS.get(reason or "", "A request was refused.")
    said = str(detail.get("message") or "").strip()
    return f"{general} It was told: “{said}”" if said else general


def failure_fix(error: str | None) -> str:
    """What to do about a document that failed, from the reason its ingestion recorded."""
    text = (error or "").lower()
    if "no text" in text:
        return ("The file has no text to read (a scanned PDF or an image): export it with its text, or run it "
                "through OCR, and upload it again.")
    if "encrypt" in text or "password" in text:
        return "The file is password-protected: save a copy without the password and upload that."
    if "corrupt" in text or "damaged" in text or "not a valid" in text:
        return "The file is damaged: open it in its program, save it again, and upload the new copy."
    if "too large" in text or "too many" in text or "zip" in text:
        return "The file is too large to read: split it into smaller files and upload those."
    if "embedding" in text or "unavailable" in text or "timeout" in text or "error:" in text:
        return ("The server could not finish it (a temporary problem): use its “Re-index” button to try again; if "
                "it fails again, tell your platform operator.")
    return "Correct what the reason says and upload the file again, or use its “Re-index” button to retry."
