"""What the chat says, as plain functions of their inputs (no Chainlit here, so they are tested directly)."""

from __future__ import annotations

import re
from urllib.parse import quote as url_quote

from backend.chat.continuation import asks_to_continue, join, separator, without_signoff
from backend.chat.types import MAX_MESSAGE_CHARS
from backend.groups import Placement

CUT_NOTE = "_(The answer was cut at the length limit — type **continue** for the rest.)_"
OLD_CUT_NOTE = "_(answer cut at the length limit — ask me to continue)_"  # in conversations stored before
CONTINUED = "…"  # an answer that continues the one cut before it starts with this
STOPPED_NOTE = "_(stopped)_"
INTERRUPTED_NOTE = "_(interrupted: the answer stopped before it was complete — ask again)_"
CHAINLIT_STOPPED = "Task manually stopped."  # what Chainlit itself says when the user presses Stop
SOURCES_PREFIX = "\n\nSources: "
ANSWERED_PREFIX = "\n\n_Answer: "  # the unobtrusive line saying who or what answered (last in a reply)

_FENCE = re.compile(r"^\s{0,3}(```|~~~)", re.M)
_INLINE = re.compile(r"`+|\*\*|__|~~|\*")


def close_markdown(text: str) -> str:
    """`text` cut anywhere by the length limit, with its open markdown closed: an unclosed code fence, inline code,
    `**`/`__` bold, `*` italic or `~~` strike-through would otherwise swallow the note after it (or show as stray
    `**`). A marker with nothing after it yet ("7. **") is dropped rather than closed around nothing."""
    text = text.rstrip()
    fences = _FENCE.findall(text)
    if len(fences) % 2:
        return text + "\n" + fences[-1]
    # Only the text after the last fence can be open (fenced code has no emphasis).
    last = list(_FENCE.finditer(text))
    start = text.find("\n", last[-1].end()) + 1 if last else 0
    opened: list[tuple[str, int]] = []  # (marker, where), innermost last
    in_code: tuple[str, int] | None = None
    for m in _INLINE.finditer(text, start):
        marker, at = m.group(), m.start()
        if in_code is not None:
            if marker == in_code[0]:
                in_code = None
            continue
        if marker.startswith("`"):
            in_code = (marker, at)
            continue
        before, after = text[at - 1:at] if at else "", text[m.end():m.end() + 1]
        line_start = at == 0 or text[:at].rstrip(" ").endswith("\n") or not text[:at].strip()
        if marker == "*" and after == " " and (line_start or before in (" ", "")):
            continue  # a bullet or a lone star, not emphasis
        if opened and opened[-1][0] == marker:
            opened.pop()
        else:
            opened.append((marker, at))
    if in_code is not None:
        opened.append(in_code)
    for marker, at in reversed(opened):
        if not text[at + len(marker):].strip():  # opened just before the cut: nothing to emphasise
            text = text[:at].rstrip()
        else:
            text = text.rstrip() + marker  # a closing marker must follow a non-space character
    return text


def cut_answer(text: str, signoff: str) -> str:
    """An answer the model stopped at max_tokens: its open markdown closed and the cut note after it, before the
    prompt's sign-off (appended verbatim by the pipeline, it stays the last line). Unchanged when nothing was
    written (a thinking model spent its whole budget thinking: a warning says so)."""
    text, signoff = text.rstrip(), signoff.strip()
    body = text[: -len(signoff)].rstrip() if signoff and text.endswith(signoff) else text
    if not body:
        return text
    return f"{close_markdown(body)}\n\n{CUT_NOTE}" + (f"\n\n{signoff}" if body != text else "")


def stopped_answer(text: str) -> str:
    """The part of an answer the user saw before pressing Stop, as it is kept in the history."""
    return f"{close_markdown(text)}\n\n{STOPPED_NOTE}"


def interrupted_answer(text: str) -> str:
    """An answer in progress as the history keeps it until it is complete: what was streamed so far, marked
    interrupted. A process killed mid-answer leaves exactly this; the complete answer replaces it."""
    return f"{close_markdown(text)}\n\n{INTERRUPTED_NOTE}" if text.strip() else INTERRUPTED_NOTE


def history_of(steps: list[dict]) -> list[dict[str, str]]:
    """A reopened conversation as the history of its next turns: each question with its answer, the last
    assistant message of the question's run (without the notes and the "Sources:" line). A question that got no
    answer (a refusal, a status or Chainlit's "Task manually stopped.", all sent outside the run) is left out: it
    would only cost the model context."""
    pairs: list[list[str]] = []
    cut = False  # the last answer was cut at the length limit
    for step in steps:
        text = step.get("output") or ""
        if step.get("type") == "user_message" and text.strip():
            pairs.append([text, ""])
        elif (step.get("type") == "assistant_message" and pairs and text.strip() and step.get("parentId")
              and text.strip() != CHAINLIT_STOPPED):
            answer = history_text(text)
            if cut and answer.startswith(CONTINUED) and len(pairs) > 1 and asks_to_continue(pairs[-1][0]):
                # "continue" and the rest of the cut answer: one answer to the question before, as it was told
                pairs.pop()
                rest = answer[len(CONTINUED):]
                pairs[-1][1] = join(pairs[-1][1], separator(pairs[-1][1], rest) + rest)
            else:
                pairs[-1][1] = answer
            cut = was_cut(text)
    return [{"role": role, "content": content} for question, answer in pairs if answer
            for role, content in (("user", question), ("assistant", answer))]


def was_cut(answer: str) -> bool:
    """Whether a stored answer says it was cut at the length limit."""
    return CUT_NOTE in answer or OLD_CUT_NOTE in answer


def ends_cut(steps: list[dict]) -> bool:
    """Whether a conversation's last answer was cut at the length limit: a "continue" now continues it."""
    answers = [s for s in steps if s.get("type") == "assistant_message" and s.get("parentId")
               and (s.get("output") or "").strip() and s.get("output", "").strip() != CHAINLIT_STOPPED]
    return bool(answers) and was_cut(answers[-1]["output"])


def continued_history(history: list[dict[str, str]], answer: str, signoff: str) -> list[dict[str, str]]:
    """The history after a continuation: the cut answer and its rest as one answer (the sign-off once, at the
    end), without the "continue" in between."""
    cut = without_signoff(history[-1]["content"], signoff)
    return [*history[:-1], {"role": "assistant", "content": join(cut, answer)}]


def history_text(answer: str) -> str:
    """A stored answer as the model sees it in the history: without the notes and the "Sources:" line."""
    text = answer.split(SOURCES_PREFIX)[0].split(ANSWERED_PREFIX)[0]
    for note in (CUT_NOTE, OLD_CUT_NOTE, STOPPED_NOTE):
        text = text.replace("\n\n" + note, "")
    return text


def answered_by(model: str, grounding: dict | None) -> str:
    """Who or what answered, said unobtrusively under the answer ("" for an answer nobody made: "I don't know")."""
    g = grounding or {}
    if g.get("mode") == "grounded":
        return ANSWERED_PREFIX + "quoted from the sources (grounded mode: no model wrote it)_"
    if not model:
        return ""
    who = ("the built-in demo model (SmolLM2-135M: small, its facts can be wrong — check the sources)"
           if model.startswith("local/") else model)
    line = f"written by {who}"
    if g.get("mode") == "checked":
        line += f"; checked against the sources: {round(100 * (g.get('score') or 0))}% supported"
    elif g.get("mode") == "fallback":
        line += "; mostly not supported by the sources, so what they say follows"
    return ANSWERED_PREFIX + line + "_"


def sorry(message: str) -> str:
    """A refusal of the pipeline as the chat shows it. The message is a sentence of its own ("This request may
    need…"), so it follows a full stop, capitalised, and ends with one."""
    return f"**Sorry.** {_sentence(message)}"


def not_allowed(message: str) -> str:
    return f"**Not allowed.** {_sentence(message)}"


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?)" else text + "."


def too_long(length: int, *, can_add_documents: bool) -> str:
    """The refusal of a message over the limit, with advice the user can follow: only those who may add documents
    are told to attach the text as a file."""
    advice = ("shorten it, split it into several messages, or attach the text as a file (.txt, .md, .pdf, .docx or "
              ".html) to add it to the knowledge base" if can_add_documents else
              "shorten it, or send the part you have a question about")
    return (f"**Sorry — the message is too long** ({length:,} characters; the limit is {MAX_MESSAGE_CHARS:,}). "
            f"Please {advice}.")


def asks_something(text: str) -> bool:
    """Whether a message sent with attached files is a question to answer (it contains a question mark), rather
    than a note about the files ("Please add this note"), whose reply is the upload's status."""
    return "?" in text or "？" in text


def source_label(i: int, title: str, section: str | None, page: int | None) -> str:
    """`[2] Pricing Rules › Discount approval, p.3`: the section tells five passages of one document apart."""
    label = f"[{i}] {title}"
    if section and section != title:
        label += f" › {section.split(' > ')[-1][:48]}"
    return label + (f", p.{page}" if page else "")


def source_labels(citations: list) -> list[str]:
    """The sources line's labels, numbered as the answer's [n] markers: two passages of one section differ by
    their number (and page), so each names its own side panel."""
    return [source_label(i, c.title, c.section, c.page) for i, c in enumerate(citations, 1)]


def source_panel(section: str | None, quote: str) -> str:
    """A cited passage as its panel shows it, under its label (the panel's title): the quote, and the section's
    full path when the label names only the innermost of more than two levels."""
    parts = section.split(" > ") if section else []
    quoted = "\n".join(f"> {line}" if line.strip() else ">" for line in quote.strip().splitlines())
    return (f"_{' › '.join(parts)}_\n\n{quoted}") if len(parts) > 2 else quoted


def markdown_data_url(content: str) -> str:
    """A text panel's content as the URL the browser reads it from: carried by the message itself, so nothing is
    written to, or served from, the chat's upload folder."""
    return "data:text/markdown;charset=utf-8," + url_quote(content, safe="")


def elsewhere_note(placements: list[Placement]) -> str:
    """Where the person's departments served by other deployment groups have their assistants ("Your Finance
    assistants are at https://finance.atrium.example.com"), one sentence per department, in name order."""
    parts = []
    for p in sorted(placements, key=lambda p: p.tenant_name):
        where = p.public_url or f"the Atrium address of deployment group {p.group!r} (ask your administrator)"
        parts.append(f"Your {p.tenant_name} assistants are at {where}.")
    return " ".join(parts)
