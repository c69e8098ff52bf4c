"""With the demo corpus and the shipped local model, as a newcomer meets Atrium: every demo starter of every
assistant is answered with the facts its label lists (bench/data/answer_facts.jsonl), in the grounded mode, from
passages of the asker's own tenant only; a question no passage covers is still "I don't know"; the OpenAI-
compatible route says how it answered (`atrium.grounding`), and the usage row records it."""

from __future__ import annotations

import contextlib
import io
import json
import re

from sqlmodel import select

from backend.db.models import ChatTurn
from backend.seed import seed_demo
from backend.settings import REPO_ROOT
from tests.knowledge.conftest import member_of
from tests.llm.fakes import sdk_for

LABELS = REPO_ROOT / "bench" / "data" / "answer_facts.jsonl"
USERS = {"sales": "alice", "engineering": "erin", "finance": "fiona"}


def labelled() -> dict[tuple[str, str, str], dict]:
    rows = [json.loads(line) for line in LABELS.read_text().splitlines() if line.strip()]
    return {(r["tenant"], r["assistant"], r["question"]): r for r in rows}


def test_every_demo_starter_is_answered_with_its_facts_from_its_own_tenants_passages(api_client, login_as):
    svc = api_client.app.state.services
    with contextlib.redirect_stdout(io.StringIO()):
        assert seed_demo(svc) == 0
    labels = labelled()
    docs = {t: {d["id"]: d["filename"] for d in svc.knowledge.list_documents(member_of(t), t)} for t in USERS}
    wrong: list[str] = []
    asked = 0
    for tenant in svc.registry.all():
        cookies = login_as(USERS[tenant.id])
        for assistant in tenant.assistants:
            for starter in assistant.starters:
                label = labels.get((tenant.id, assistant.name, starter))
                assert label is not None, f"starter {starter!r} of {assistant.name} has no label in {LABELS.name}"
                r = api_client.post(f"/api/t/{tenant.id}/chat", json={"assistant": assistant.name,
                                                                     "message": starter}, cookies=cookies)
                assert r.status_code == 200, r.text
                body, asked = r.json(), asked + 1
                missing = [f for f in label["facts"] if not re.search(f, body["answer"], re.I)]
                if missing:
                    wrong.append(f"{starter!r}: lacks {missing} in {body['answer']!r}")
                assert body["grounding"]["mode"] == "grounded" and body["model"] == "atrium/grounded", body
                assert body["prompt_tokens"] == body["completion_tokens"] == 0
                # every passage used is the tenant's own, and every marker is a passage on the sources line
                assert body["citations"] and all(c["document_id"] in docs[tenant.id] for c in body["citations"])
                markers = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
                assert markers == set(range(1, len(body["citations"]) + 1)), body["answer"]
                cited_files = {docs[tenant.id][c["document_id"]] for c in body["citations"]}
                assert set(label["sources"]) <= cited_files, (starter, cited_files)
    assert asked == 11 and not wrong, "\n".join(wrong)

    # The usage row says how the last answer was made.
    with svc.db.session() as session:
        row = session.exec(select(ChatTurn).where(ChatTurn.id == body["turn_id"])).one()
    assert (row.answer_mode, row.grounding, row.model, row.prompt_tokens) == ("grounded", 1.0, "atrium/grounded", 0)

    # No covering passage: still "I don't know" (and no passage of another tenant stands in).
    for label in (v for v in labels.values() if v.get("no_answer")):
        r = api_client.post(f"/api/t/{label['tenant']}/chat", cookies=login_as(USERS[label["tenant"]]),
                            json={"assistant": label["assistant"], "message": label["question"]})
        assert r.json()["answer"].startswith("I don't know") and r.json()["citations"] == [], r.json()

    # Maria belongs to sales and finance: asked in sales, a finance question finds no finance passage.
    meals = "What is the daily meal limit when travelling?"
    r = api_client.post("/api/t/sales/chat", cookies=login_as("maria"),
                        json={"assistant": "sales-assistant", "message": meals})
    assert all(c["document_id"] in docs["sales"] for c in r.json()["citations"]), r.json()
    assert "$75" not in r.json()["answer"]

    # The OpenAI-compatible route, streamed and not: the same grounded answer, and how it was made.
    client = sdk_for(api_client, "engineering")
    question = "How quickly must a SEV1 page be acknowledged?"
    done = client.chat.completions.create(model="eng-assistant", messages=[{"role": "user", "content": question}])
    atrium = done.model_extra["atrium"]
    assert "5 minutes" in done.choices[0].message.content
    assert atrium["grounding"]["mode"] == "grounded" and atrium["model"] == "atrium/grounded"
    assert all(c["document_id"] in docs["engineering"] for c in atrium["citations"])
    streamed = client.chat.completions.create(model="eng-assistant", stream=True,
                                              messages=[{"role": "user", "content": "What is the rate limit of the "
                                                                                    "public API?"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert "600" in text and "3,000" in text
