"""Chainlit handlers only: turn UI events into calls to backend services (no SQL, LiteLLM or store here)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import chainlit as cl
from chainlit.config import ChainlitConfigOverrides, FeaturesSettings, SpontaneousFileUploadFeature
from chainlit.types import ThreadDict
from chainlit.utils import utc_now
from fastapi import HTTPException

from backend.auth.claims import missing_access_hint
from backend.auth.guard import allowed, decide, is_operator, principal_of_claims
from backend.auth.password_login import TooManyAttempts
from backend.auth.principal import Principal
from backend.auth.request_context import client_ip
from backend.chat.conversations import files_title
from backend.chat.downgrade import NOTE_PREFIX as DOWNGRADE_NOTE
from backend.chat.types import MAX_MESSAGE_CHARS, ChatRequest, TurnResult
from backend.container import get_services
from backend.errors import AtriumError, Forbidden, Misdirected
from backend.knowledge.service import AttachedFile
from backend.logs import RequestInfo, request_info
from backend.tracing import TENANT, current_ids, span
from ui.chat_text import (
    CONTINUED,
    answered_by,
    asks_something,
    continued_history,
    cut_answer,
    elsewhere_note,
    ends_cut,
    history_of,
    interrupted_answer,
    markdown_data_url,
    not_allowed,
    sorry,
    source_labels,
    source_panel,
    stopped_answer,
    too_long,
)
from ui.history import AtriumDataLayer
from ui.profiles import parse_profile, profile_name
from ui.session_tokens import sign_out
from ui.surface import take_attachments

services = get_services()
_background: set[asyncio.Task] = set()  # title tasks, referenced until done
NOT_AVAILABLE = ("**This conversation isn't available** (it belongs to someone else or was deleted). "
                 "You are in a new chat.")
DELETED_HERE = ("**This conversation was deleted** (in another tab or window). Your message starts a new chat, "
                "saved in your history.")
# Profiles of a department whose knowledge base the user may not add to: no paperclip (the upload is refused anyway).
NO_UPLOADS = ChainlitConfigOverrides(features=FeaturesSettings(
    spontaneous_file_upload=SpontaneousFileUploadFeature(enabled=False)))
NOTED = "_Noted. Ask me about {it} whenever you like._"


if services.conversations is not None:

    @cl.data_layer
    def history_layer() -> AtriumDataLayer:
        return AtriumDataLayer(get_services)

def _principal_of(user: cl.User | None) -> Principal | None:
    claims = (user.metadata or {}).get("claims") if user else None
    return principal_of_claims(claims, lambda c: services.principal_from_claims(c, auth="session"))


if services.settings.password_login_enabled:

    @cl.password_auth_callback
    async def password_login(username: str, password: str) -> cl.User | None:
        # Hashing on threads of its own, failures limited per address and account, refusals audited
        # (backend/auth/password_login.py).
        assert services.password_login is not None
        try:
            claims = await services.password_login.authenticate(username, password, ip=client_ip.get())
        except TooManyAttempts as exc:
            raise HTTPException(status_code=429, detail=exc.message,
                                headers={"Retry-After": str(exc.retry_after_s)}) from None
        if claims is None:
            return None
        principal = services.principal_from_claims(claims)
        services.audit.record("login", subject=principal.subject, route="/chat/login", ip=client_ip.get(),
                              detail={"method": "password", "tenants": sorted(principal.tenants)})
        marks = await asyncio.to_thread(services.sessions.start, subject=principal.subject, provider="password")
        return cl.User(identifier=principal.subject, display_name=principal.name,
                       metadata={"claims": claims, "provider": "password", **marks})


if services.oidc_login is not None:
    from backend.auth.oidc import OidcLoginError
    from backend.auth.oidc_web import CALLBACK_PATH
    from ui.oidc_provider import register as register_oidc_provider

    def _oidc_failure(exc: OidcLoginError) -> None:
        exc.record(services.audit, ip=client_ip.get())

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
        marks = await asyncio.to_thread(services.sessions.start, subject=principal.subject, provider="oidc")
        return cl.User(identifier=principal.subject, display_name=principal.name,
                       metadata={"claims": raw_user_data, "provider": "oidc", **marks})


cl.on_logout(sign_out)  # sign-out revokes the session on the server (ui/session_tokens.py)


@cl.set_chat_profiles
async def chat_profiles(current_user: cl.User | None, language: str | None = None) -> list[cl.ChatProfile]:
    principal = _principal_of(current_user)
    if principal is None or not principal.tenants:
        return []
    multi = len(principal.tenants) > 1
    # The departments another deployment group serves are not offered here; each profile says where they are.
    elsewhere = f"\n\n_{elsewhere_note(list(principal.elsewhere.values()))}_" if principal.elsewhere else ""
    profiles: list[cl.ChatProfile] = []
    for tenant_id in sorted(principal.tenants):
        tenant = services.registry.get(tenant_id)
        if tenant is None:
            continue
        overrides = None if allowed(principal, tenant.id, "ingest") else NO_UPLOADS
        for assistant in tenant.assistants:
            title = f"{tenant.name} · {assistant.title}" if multi else assistant.title
            profiles.append(cl.ChatProfile(
                name=profile_name(tenant.id, assistant.name), display_name=title,
                markdown_description=f"**{tenant.name}** — {assistant.description}{elsewhere}",
                starters=[cl.Starter(label=q, message=q) for q in assistant.starters] or None,
                config_overrides=overrides,
            ))
            if allowed(principal, tenant.id, "prompts:write"):  # the staging profile: prompt editors
                profiles.append(cl.ChatProfile(
                    name=profile_name(tenant.id, assistant.name, "staging"),
                    display_name=f"{title} (staging)",
                    markdown_description=f"**{tenant.name}** — the *staging* prompt of {assistant.title}, "
                                         "for prompt editors.",
                    config_overrides=overrides,
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
    cl.user_session.set("last_cut", False)
    if principal.elsewhere:
        # Unobtrusive: a toast, not a message (a message would push the assistant's starters away and be stored
        # in every new conversation); the profiles' descriptions say it too.
        await cl.context.emitter.emit("toast", {"message": elsewhere_note(list(principal.elsewhere.values())),
                                                "type": "info"})


@cl.on_chat_resume
async def resume(thread: ThreadDict) -> None:
    """A conversation reopened from the sidebar: its messages become the history of the next turns (the thread
    reached here only if it is the caller's own, in a tenant the caller still belongs to)."""
    steps = thread.get("steps") or []
    cl.user_session.set("history", history_of(steps)[-20:])
    cl.user_session.set("last_cut", ends_cut(steps))  # a "continue" continues the last answer


class _Chat(NamedTuple):
    """Who is chatting, with which assistant: the session's user and chat profile, checked for this message.
    (Not a dataclass: Chainlit loads this file outside sys.modules, where dataclasses cannot resolve it.)"""

    principal: Principal
    tenant: str
    assistant: str
    label: str


@cl.on_message
async def on_message(message: cl.Message) -> None:
    chat = await _chat_of_session()
    if chat is None:  # the user was told why not
        return
    attachments = take_attachments(cl.context.session, message.id)
    if services.conversations is not None and await asyncio.to_thread(
            services.conversations.was_deleted, chat.principal, cl.context.session.thread_id):
        await _move_to_new_chat(chat, message, [e.name for e in attachments])
    text = (message.content or "").strip()
    # A message sent with files is answered when it asks something; otherwise ("Please add this note") it is a
    # note about the files, and the upload's status is the reply (README, Chat).
    answer_follows = bool(text) and (not attachments or asks_something(text))
    if attachments:
        await _add_attachments(chat, attachments, text, answer_follows=answer_follows)
        if not answer_follows:
            return
    if len(message.content) > MAX_MESSAGE_CHARS:  # refused before the pipeline: with advice for this user
        await _notice(too_long(len(message.content), can_add_documents=allowed(chat.principal, chat.tenant, "ingest")))
        return
    # A chat message comes over the socket, not as an HTTP request: its turn is a trace of its own, and its log
    # lines carry an id of their own, as a request's do (backend/api/observe.py).
    with span("atrium.chat.turn", {TENANT: chat.tenant, "atrium.channel": "ui"}):
        ids = current_ids()
        token = request_info.set(RequestInfo(request_id=uuid.uuid4().hex, trace_id=ids[0] if ids else uuid.uuid4().hex,
                                             tenant=chat.tenant))
        try:
            await _answer(chat, message)
        finally:
            request_info.reset(token)


async def _chat_of_session() -> _Chat | None:
    """The session's user and chat profile, if they may chat there; else None, and the user is told why."""
    principal = _principal_of(cl.user_session.get("user"))
    if principal is None or not principal.tenants:
        # The chat's start said why at length; every message after it gets a short reminder, not the same text.
        await _notice(_no_access_again(principal))
        return None
    parsed = parse_profile(cl.user_session.get("chat_profile"))
    if parsed is None:
        await _notice("Pick an assistant first (the selector at the top).")
        return None
    tenant, assistant, label = parsed
    if label != "production" and (denial := decide(principal, tenant, "prompts:write")) is not None:
        await asyncio.to_thread(services.access.record, denial, subject=principal.subject, tenant=tenant,
                                route="chat:profile", ip=client_ip.get())
        await _notice("Only prompt editors can chat with the staging prompt.")
        return None
    return _Chat(principal, tenant, assistant, label)


async def _answer(chat: _Chat, message: cl.Message) -> None:
    """The assistant's answer, streamed as the model writes it, then its sources and notes; a refusal or a
    failure is said instead. The first answer of a conversation gets it a title (in the background)."""
    history: list[dict[str, str]] = cl.user_session.get("history") or []
    req = ChatRequest(tenant=chat.tenant, assistant=chat.assistant, message=message.content, history=history,
                      label=chat.label, channel="ui", last_answer_cut=bool(cl.user_session.get("last_cut")))
    # Its time is the start of the answer: a stopped answer is stored before Chainlit's "Task manually stopped."
    reply = cl.Message(content="", created_at=utc_now())
    kept = 0.0  # when the answer so far was last stored (as interrupted, until it is complete)
    try:
        result: TurnResult | None = None
        async for item in services.chat.stream(chat.principal, req):
            if isinstance(item, TurnResult):
                result = item
            else:
                await reply.stream_token(item)
                if time.monotonic() - kept >= services.settings.turn_progress_s:
                    kept = time.monotonic()
                    await _keep_partial(reply)
    except Forbidden as exc:  # recorded by the pipeline's access check
        await _notice(not_allowed(exc.message))
        return
    except Misdirected:  # a profile of a department another deployment group serves (recorded by the check)
        placement = chat.principal.elsewhere.get(chat.tenant)
        await _notice(elsewhere_note([placement]) if placement else "This assistant is not served on this address.")
        return
    except AtriumError as exc:
        await _notice(sorry(exc.message))
        return
    except asyncio.CancelledError:
        # Stop was pressed: what the user read so far stays in the history, marked as stopped (the pipeline
        # records the turn as cancelled).
        if reply.content.strip():
            reply.content = stopped_answer(reply.content)
            await reply.send()
        raise
    assert result is not None
    await _send_answer(reply, result)
    if not history and services.conversations is not None and result.answer:
        task = asyncio.create_task(services.conversations.write_title(
            chat.principal, cl.context.session.thread_id, question=message.content, answer=result.answer))
        _background.add(task)
        task.add_done_callback(_background.discard)
    if result.continues:  # the rest of the cut answer: the history keeps them as one answer
        history = continued_history(history, result.answer, result.signoff)
    else:
        history.extend([{"role": "user", "content": message.content},
                        {"role": "assistant", "content": result.answer}])
    cl.user_session.set("history", history[-20:])
    cl.user_session.set("last_cut", result.finish_reason == "length")


async def _keep_partial(reply: cl.Message) -> None:
    """The answer so far in the history, marked interrupted (at most once per ATRIUM_TURN_PROGRESS_S): if this
    process dies mid-answer, the reopened conversation shows what was streamed and that it was cut; the complete
    answer (or a stopped one) replaces it under the same id."""
    from chainlit.data import get_data_layer

    layer = get_data_layer()
    if layer is not None:
        await layer.update_step({**reply.to_dict(), "output": interrupted_answer(reply.content)})


async def _send_answer(reply: cl.Message, result: TurnResult) -> None:
    """The streamed answer, completed: its cited passages as side panels, the sources line, the notes."""
    labels = source_labels(result.citations)
    reply.elements = [  # type: ignore[assignment]
        cl.Text(name=name, content=(panel := source_panel(c.section, c.quote)), url=markdown_data_url(panel),
                display="side")
        for name, c in zip(labels, result.citations, strict=True)
    ]
    if result.continues:  # it starts where the answer before it stopped
        reply.content = CONTINUED + (reply.content or result.answer).lstrip()
    if result.finish_reason == "length":  # the model stopped at max_tokens, likely mid-sentence
        reply.content = cut_answer(reply.content or result.answer, result.signoff)
    if labels:
        reply.content = (reply.content or result.answer) + "\n\nSources: " + ", ".join(labels)
    for warning in result.warnings:
        # A quiet line when a budget runs low; a clear one when it is spent and a cheaper tier answered.
        clear = result.downgraded_from and warning.startswith(DOWNGRADE_NOTE)
        reply.content += f"\n\n**{warning}**" if clear else f"\n\n_{warning}_"
    reply.content += answered_by(result.model, result.grounding)
    if not result.model and not result.citations:
        # "I don't know" (no model, no passage): nothing to rate, and no prompt version's feedback to count.
        reply.parent_id = None
    reply.metadata = {"turn_id": result.turn_id}  # stored with the message: feedback per prompt version
    await reply.send()


async def _notice(content: str) -> cl.Message:
    """A reply that is not a model's answer (a refusal, a status) and is the turn's last word: sent outside the
    turn's run, so Chainlit shows no thumbs under it (a rating there would not be about any prompt version)."""
    msg = cl.Message(content=content)
    msg.parent_id = None  # Chainlit puts every message of a handler in its run; the thumbs rate the run
    await msg.send()
    return msg


async def _move_to_new_chat(chat: _Chat, message: cl.Message, filenames: list[str]) -> None:
    """The session's conversation was deleted (in another tab): nothing can be stored in it any more. The
    message, its answer and everything after go to a new conversation of the same assistant, and the user is
    told so; the browser's sidebar and current thread follow (Chainlit's `first_interaction`)."""
    session = cl.context.session
    session.thread_id = str(uuid.uuid4())
    cl.user_session.set("history", [])  # the deleted exchanges are not the new chat's history
    assert services.conversations is not None
    await asyncio.to_thread(services.conversations.create, chat.principal, conversation_id=session.thread_id,
                            tenant=chat.tenant, assistant=chat.assistant, label=chat.label,
                            title=(message.content or "").strip() or files_title(filenames) or None)
    # Chainlit already tried to store the message and the turn's run under the deleted id (refused): again,
    # under the new one (the run is stored when it ends).
    message.thread_id = session.thread_id
    if (run := cl.context.current_run) is not None:
        run.thread_id = session.thread_id
    await message.update()
    await cl.context.emitter.emit("first_interaction", {"interaction": message.content or "files",
                                                        "thread_id": session.thread_id})
    await cl.Message(content=DELETED_HERE).send()


def _no_access_again(principal: Principal | None) -> str:
    if principal is not None and principal.elsewhere:
        return elsewhere_note(list(principal.elsewhere.values()))
    if principal is not None and is_operator(principal):
        return "There is no assistant to chat with for a platform operator — the note at the top says where to go."
    return "There is no assistant for your account here yet — the note at the top says whom to ask."


def _no_access(principal: Principal | None) -> str:
    if principal is not None and principal.elsewhere:  # every department of theirs is served by another group
        return ("**Your assistants are not on this address.** " + elsewhere_note(list(principal.elsewhere.values()))
                + " Open that address to chat with them.")
    if principal is not None and is_operator(principal):
        return ("**You are signed in as a platform operator**, not as a member of a department, so there is no "
                "assistant to chat with here. Open the [operations page](/admin), or the API: `GET /api/admin/tenants` "
                "and `GET /api/admin/audit`; "
                "to use a department's assistant, ask to be added to its group.")
    return ("**No access.** Your account is not in any department that uses Atrium yet — "
            + missing_access_hint(services.registry) + ".")


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


async def _add_attachments(chat: _Chat, attachments: list, text: str, *, answer_follows: bool) -> None:
    """Files attached to a message: a conversation they alone start is named after them; they go into the
    knowledge base; a note about them that asks nothing is acknowledged once they are taken."""
    if not text and services.conversations is not None:
        # Files and no text: the conversation is named after them, not left as "New conversation".
        await asyncio.to_thread(services.conversations.name_from_files, chat.principal, cl.context.session.thread_id,
                                [e.name for e in attachments], tenant=chat.tenant, assistant=chat.assistant,
                                label=chat.label)
    added = await _ingest_attachments(chat.principal, chat.tenant, attachments, answer_follows=answer_follows)
    if text and not answer_follows and added:
        await _notice(NOTED.format(it="it" if len(attachments) == 1 else "them"))


async def _ingest_attachments(principal: Principal, tenant: str, elements: list, *, answer_follows: bool) -> bool:
    """Files attached in the chat go into the tenant's knowledge base (KnowledgeService.upload_attachments: tenant
    admins only, audited); each file gets its own status line, followed until it is ready or failed, and one bad
    file never stops the others. True when the files were taken (their status says how each one went)."""
    kb_name = (services.registry.get(tenant).name if services.registry.get(tenant) else tenant)

    async def say(content: str) -> cl.Message:
        # Before an answer the status stays in the turn (the thumbs go under the answer); else it is the last word.
        return await (cl.Message(content=content).send() if answer_follows else _notice(content))

    files = [AttachedFile(filename=e.name, path=Path(e.path)) for e in elements]
    try:
        result = await asyncio.to_thread(services.knowledge.upload_attachments, principal, tenant, files)
    except Forbidden:  # refused and audited by the knowledge service, before any file was read
        await say(f"**Not allowed.** Only {kb_name} administrators can add documents to the knowledge base, so "
                  "your file was not stored. Ask one of them to add it.")
        return False
    except AtriumError as exc:
        await say(f"**Could not add the files.** {exc.message[:1].upper()}{exc.message[1:]}")
        return False
    docs, errors = result["documents"], result["errors"]
    status = await say(_upload_status(docs, errors, kb_name))
    async for progress in services.knowledge.follow_documents(principal, tenant, docs):
        docs = progress
        status.content = _upload_status(docs, errors, kb_name)
        await status.update()
    return any(d["status"] != "failed" for d in docs)
