"""Chainlit handlers only: turn UI events into calls to backend services (no SQL, LiteLLM or store here)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import chainlit as cl
from chainlit.types import ThreadDict

from backend.auth.claims import missing_access_hint
from backend.auth.principal import PROMPT_EDITOR, Principal
from backend.auth.rbac import permissions_of
from backend.auth.request_context import client_ip
from backend.chat import ChatRequest, TurnResult
from backend.container import get_services
from backend.errors import AtriumError, Forbidden
from backend.knowledge.service import UploadFile as KbUpload
from ui.history import AtriumDataLayer, principal_of
from ui.profiles import parse_profile, profile_name

services = get_services()
_background: set[asyncio.Task] = set()  # title tasks, referenced until done
NOT_AVAILABLE = ("**This conversation isn't available** (it belongs to someone else or was deleted). "
                 "You are in a new chat.")
CUT_NOTE = "_(answer cut at the length limit — ask me to continue)_"


if services.conversations is not None:

    @cl.data_layer
    def history_layer() -> AtriumDataLayer:
        return AtriumDataLayer(get_services)

def _principal_of(user: cl.User | None) -> Principal | None:
    return principal_of(services, (user.metadata or {}).get("claims") if user else None)


if services.settings.password_login_enabled:

    @cl.password_auth_callback
    async def password_login(username: str, password: str) -> cl.User | None:
        # PBKDF2 is deliberately slow; keep it off the event loop.
        claims = await asyncio.to_thread(services.demo_users.authenticate, username, password)
        if claims is None:
            services.audit.record("denied", subject=username, route="/chat/login", status=401, ip=client_ip.get(),
                                  reason="bad_password", detail={"method": "password"})
            return None
        principal = services.principal_from_claims(claims)
        services.audit.record("login", subject=principal.subject, route="/chat/login", ip=client_ip.get(),
                              detail={"method": "password", "tenants": sorted(principal.tenants)})
        return cl.User(identifier=principal.subject, display_name=principal.name,
                       metadata={"claims": claims, "provider": "password"})


if services.oidc_login is not None:
    from backend.auth.oidc import OidcLoginError
    from backend.auth.oidc_web import CALLBACK_PATH
    from ui.oidc_provider import register as register_oidc_provider

    def _oidc_failure(exc: OidcLoginError) -> None:
        services.audit.login_denied(exc, ip=client_ip.get())

    register_oidc_provider(services.oidc_login, on_failure=_oidc_failure)  # before @cl.oauth_callback

    @cl.oauth_callback
    async def oidc_login(provider_id: str, token: str, raw_user_data: dict, default_user: cl.User,
                         id_token: str | None = None) -> cl.User | None:
        # raw_user_data: the verified ID token claims merged with userinfo (ui/oidc_provider.py).
        try:
            principal = services.principal_from_claims(raw_user_data)
        except ValueError as exc:
            _oidc_failure(OidcLoginError("unmappable_claims", str(exc)))
            return None
        # A user in no tenant still logs in, and is told which group to ask for (on_chat_start).
        services.audit.record("login", subject=principal.subject, route=CALLBACK_PATH, ip=client_ip.get(),
                              detail={"method": "oidc", "tenants": sorted(principal.tenants),
                                      "platform_roles": sorted(principal.platform_roles)})
        return cl.User(identifier=principal.subject, display_name=principal.name,
                       metadata={"claims": raw_user_data, "provider": "oidc"})


@cl.set_chat_profiles
async def chat_profiles(current_user: cl.User | None, language: str | None = None) -> list[cl.ChatProfile]:
    principal = _principal_of(current_user)
    if principal is None or not principal.tenants:
        return []
    multi = len(principal.tenants) > 1
    profiles: list[cl.ChatProfile] = []
    for tenant_id in sorted(principal.tenants):
        tenant = services.registry.get(tenant_id)
        if tenant is None:
            continue
        for assistant in tenant.assistants:
            title = f"{tenant.name} · {assistant.title}" if multi else assistant.title
            profiles.append(cl.ChatProfile(
                name=profile_name(tenant.id, assistant.name), display_name=title,
                markdown_description=f"**{tenant.name}** — {assistant.description}",
                starters=[cl.Starter(label=q, message=q) for q in assistant.starters] or None,
            ))
            if principal.has_role(tenant.id, PROMPT_EDITOR):
                profiles.append(cl.ChatProfile(
                    name=profile_name(tenant.id, assistant.name, "staging"),
                    display_name=f"{title} (staging)",
                    markdown_description=f"**{tenant.name}** — the *staging* prompt of {assistant.title}, "
                                         "for prompt editors.",
                ))
    return profiles


@cl.on_chat_start
async def start() -> None:
    session = cl.context.session
    if getattr(session, "thread_id_to_resume", None) and not getattr(session, "restored", False):
        # A new session asked to resume a thread and Chainlit starts a chat instead: the resume failed (the data
        # layer found no conversation of this user under that id, and audited it if it is someone else's). Say
        # so, and write this chat to a thread of its own: nothing typed here goes near the one asked for.
        session.thread_id_to_resume = None
        session.thread_id = str(uuid.uuid4())
        await cl.Message(content=NOT_AVAILABLE).send()
    principal = _principal_of(cl.user_session.get("user"))
    if principal is None or not principal.tenants:
        await cl.Message(content=_no_access(principal)).send()
        return
    cl.user_session.set("history", [])


@cl.on_chat_resume
async def resume(thread: ThreadDict) -> None:
    """A conversation reopened from the sidebar: its messages become the history of the next turns (the thread
    reached here only if it is the caller's own, in a tenant the caller still belongs to)."""
    cl.user_session.set("history", history_of(thread.get("steps") or [])[-20:])


def history_of(steps: list[dict]) -> list[dict[str, str]]:
    """Each question with the last assistant message after it (its answer, without the cut note and the
    "Sources:" line)."""
    history: list[dict[str, str]] = []
    for step in steps:
        text = step.get("output") or ""
        if step.get("type") == "user_message" and text.strip():
            history.append({"role": "user", "content": text})
        elif step.get("type") == "assistant_message" and history and text.strip():
            answer = {"role": "assistant", "content": text.split("\n\nSources: ")[0].replace("\n\n" + CUT_NOTE, "")}
            if history[-1]["role"] == "assistant":
                history[-1] = answer
            else:
                history.append(answer)
    return history


@cl.on_message
async def on_message(message: cl.Message) -> None:
    principal = _principal_of(cl.user_session.get("user"))
    if principal is None or not principal.tenants:
        await cl.Message(content=_no_access(principal)).send()
        return
    parsed = parse_profile(cl.user_session.get("chat_profile"))
    if parsed is None:
        await cl.Message(content="Pick an assistant first (the selector at the top).").send()
        return
    tenant, assistant, label = parsed
    if label != "production" and not principal.has_role(tenant, PROMPT_EDITOR):
        services.audit.record("denied", subject=principal.subject, tenant=tenant, route="chat:profile",
                              status=403, reason="missing_role", detail={"label": label})
        await cl.Message(content="Only prompt editors can chat with the staging prompt.").send()
        return

    attachments = [e for e in (message.elements or []) if getattr(e, "path", None)]
    if attachments:
        if not (message.content or "").strip() and services.conversations is not None:
            # Files and no text: the conversation is named after them, not left as "New conversation".
            await asyncio.to_thread(services.conversations.name_from_files, principal, cl.context.session.thread_id,
                                    [e.name for e in attachments], tenant=tenant, assistant=assistant, label=label)
        await _ingest_attachments(principal, tenant, attachments)
        if not (message.content or "").strip():
            return

    history: list[dict[str, str]] = cl.user_session.get("history") or []
    req = ChatRequest(tenant=tenant, assistant=assistant, message=message.content, history=history,
                      label=label, channel="ui")
    reply = cl.Message(content="")
    try:
        result: TurnResult | None = None
        async for item in services.chat.stream(principal, req):
            if isinstance(item, TurnResult):
                result = item
            else:
                await reply.stream_token(item)
    except Forbidden as exc:
        services.audit.record("denied", subject=principal.subject, tenant=tenant, route="chat:message",
                              status=403, reason=exc.code, detail={"assistant": assistant})
        await cl.Message(content=f"**Not allowed.** {exc.message}").send()
        return
    except AtriumError as exc:
        await cl.Message(content=f"**Sorry —** {exc.message}").send()
        return
    assert result is not None
    labels = [_source_label(i, c) for i, c in enumerate(result.citations, 1)]
    reply.elements = [  # type: ignore[assignment]
        cl.Text(name=label, content=_source_panel(label, c), display="side")
        for label, c in zip(labels, result.citations, strict=True)
    ]
    if result.finish_reason == "length":  # the model stopped at max_tokens, likely mid-sentence
        # Before the prompt's sign-off, which is appended verbatim and stays the answer's last line.
        text, signoff = (reply.content or result.answer).rstrip(), result.signoff.strip()
        body = text[: -len(signoff)].rstrip() if signoff and text.endswith(signoff) else text
        if body:  # nothing written at all (a thinking model's whole budget went on thinking): a warning says so
            reply.content = f"{body}\n\n{CUT_NOTE}" + (f"\n\n{signoff}" if body != text else "")
    if labels:
        reply.content = (reply.content or result.answer) + "\n\nSources: " + ", ".join(labels)
    for warning in result.warnings:
        reply.content += f"\n\n_{warning}_"
    reply.metadata = {"turn_id": result.turn_id}  # stored with the message: feedback per prompt version
    await reply.send()
    if not history and services.conversations is not None and result.answer:
        thread_id = cl.context.session.thread_id
        task = asyncio.create_task(services.conversations.write_title(principal, thread_id, question=message.content,
                                                                      answer=result.answer))
        _background.add(task)
        task.add_done_callback(_background.discard)
    history.extend([{"role": "user", "content": message.content}, {"role": "assistant", "content": result.answer}])
    cl.user_session.set("history", history[-20:])


def _no_access(principal: Principal | None) -> str:
    if principal is not None and principal.is_platform_admin:
        return ("**You are signed in as a platform operator**, not as a member of a department, so there is no "
                "assistant to chat with here. Open the [operations page](/admin), or the API: `GET /api/admin/tenants` "
                "and `GET /api/admin/audit`; "
                "to use a department's assistant, ask to be added to its group.")
    return ("**No access.** Your account is not in any department that uses Atrium yet — "
            + missing_access_hint(services.registry) + ".")


def _source_label(i: int, citation) -> str:
    """`[2] Pricing Rules › Discount approval, p.3`: the section tells five passages of one document apart."""
    label = f"[{i}] {citation.title}"
    if citation.section and citation.section != citation.title:
        section = citation.section.split(" > ")[-1]
        label += f" › {section[:48]}"
    return label + (f", p.{citation.page}" if citation.page else "")


def _source_panel(label: str, citation) -> str:
    """A cited passage as its side panel shows it. Chainlit opens the panel by itself after an answer with every
    passage of the chat in it (under the last one's name), so each passage starts with its own label."""
    parts = citation.section.split(" > ") if citation.section else []
    quote = "\n".join(f"> {line}" if line.strip() else ">" for line in citation.quote.strip().splitlines())
    # The label names the document and the innermost section; a deeper path is shown in full under it.
    trail = f"\n\n_{' › '.join(parts)}_" if len(parts) > 2 else ""
    return f"**{label}**{trail}\n\n{quote}"


_STATUS_ICON = {"queued": "⏳", "parsing": "⏳", "embedding": "⏳", "ready": "✅", "failed": "❌"}


def _upload_status(docs: list[dict], errors: list[dict], kb_name: str) -> str:
    lines = [f"**Adding to the {kb_name} knowledge base**"]
    for d in docs:
        state = d["status"]
        if state == "ready":
            note = "ready — " + ("unchanged, already in the knowledge base" if d.get("duplicate") else
                                 f"{d['chunks']} passage{'' if d['chunks'] == 1 else 's'}, searchable now")
        elif state == "failed":
            note = f"failed: {d['error']}"
        elif state == "embedding" and d["chunks"]:
            note = f"embedding {d['chunks_done']}/{d['chunks']}"
        else:
            note = state
        lines.append(f"- {_STATUS_ICON.get(state, '⏳')} **{d['filename']}** — {note}")
    lines += [f"- ❌ **{e['filename']}** — {e['detail']}" for e in errors]
    return "\n".join(lines)


async def _ingest_attachments(principal: Principal, tenant: str, elements: list) -> None:
    """Files attached in the chat go into the tenant's knowledge base — only for those allowed to ingest
    (tenant admins); each file gets its own status line, and one bad file never stops the others."""
    kb_name = (services.registry.get(tenant).name if services.registry.get(tenant) else tenant)
    if "ingest" not in permissions_of(principal, tenant):
        services.audit.record("denied", subject=principal.subject, tenant=tenant, route="chat:upload", status=403,
                              reason="missing_role", detail={"files": [e.name for e in elements][:20]})
        await cl.Message(content=f"**Not allowed.** Only {kb_name} administrators can add documents to the "
                                 "knowledge base, so your file was not stored. Ask one of them to add it.").send()
        return
    files = [KbUpload(filename=e.name, data=await asyncio.to_thread(Path(e.path).read_bytes)) for e in elements]
    try:
        result = await asyncio.to_thread(services.knowledge.upload, principal, tenant, files, route="chat:upload")
    except AtriumError as exc:
        await cl.Message(content=f"**Could not add the files —** {exc.message}").send()
        return
    docs, errors = result["documents"], result["errors"]
    status = cl.Message(content=_upload_status(docs, errors, kb_name))
    await status.send()
    pending = {d["id"] for d in docs if d["status"] not in ("ready", "failed")}
    for _ in range(900):  # follow progress for up to ~15 minutes; the job goes on regardless
        if not pending:
            break
        await asyncio.sleep(1)
        for i, d in enumerate(docs):
            if d["id"] in pending:
                try:
                    docs[i] = {**d, **await asyncio.to_thread(services.knowledge.get_document, principal, tenant,
                                                             d["id"])}
                except AtriumError:  # deleted meanwhile
                    docs[i] = {**d, "status": "failed", "error": "deleted while it was being added"}
                if docs[i]["status"] in ("ready", "failed"):
                    pending.discard(d["id"])
        status.content = _upload_status(docs, errors, kb_name)
        await status.update()
