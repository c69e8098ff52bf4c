"""FastAPI routers (thin): they parse, call a service, and shape the answer."""

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Every router of the app, in one place (and so in the isolation tests' route inventory)."""
    from backend.api import (
        admin,
        admin_page,
        chat,
        console,
        dify_chat,
        dify_retrieval,
        documents,
        eval_gate,
        evals,
        feedback,
        health,
        keys,
        me,
        metrics,
        openai_compat,
        prompts,
        search,
        sessions,
        studio,
        usage,
    )

    # The OpenAI-compatible routes first: Starlette matches routes in order, and they are the hot path.
    return [openai_compat.router, health.router, me.router, chat.router, keys.router, admin.router,
            dify_chat.router, prompts.router, studio.router, usage.router, documents.router, search.router,
            dify_retrieval.router, admin_page.router, console.router, feedback.router, sessions.router,
            metrics.router, evals.router, eval_gate.router]
