"""Start-up checks: configurations that would run, but wrongly, once there is more than one pod.

With a PostgreSQL `DATABASE_URL` the deployment is taken to be several replicas (and workers) sharing one
database, unless ATRIUM_SINGLE_NODE=true says there is one pod. Each problem is one line naming the fix; the app
and `atrium worker` stop on them instead of running with state that each pod would keep to itself.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from backend.config_files import ConfigError
from backend.settings import Settings


class StartupError(ConfigError):
    """One or more misconfigurations; printed one `error:` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        # The CLI prints "error: {exc}": the lines after the first carry their own prefix.
        super().__init__("\nerror: ".join(problems))


def problems(settings: Settings, *, serving: bool = True) -> list[str]:
    """What is wrong for this process (`serving`: an app that answers browsers; False: an ingestion worker)."""
    if make_url(settings.sql_url).get_backend_name() != "postgresql":
        return []  # the embedded default: one process, one data dir
    found: list[str] = []
    if settings.vector_store == "sqlite" and not settings.single_node:
        found.append("DATABASE_URL is PostgreSQL but VECTOR_STORE=sqlite keeps the vectors in each pod's own file "
                     "(a document ingested by one pod is found by that pod only): set VECTOR_STORE to a shared store "
                     "(pgvector or pinecone), or ATRIUM_SINGLE_NODE=true for a deployment of one pod")
    if not serving:
        return found  # a worker keeps no quota counters and no browser sessions
    if not settings.redis_url and not settings.single_node:
        found.append("DATABASE_URL is PostgreSQL but REDIS_URL is not set, so each pod would keep its own quota and "
                     "rate-limit counters (N pods allow N times the limit): set REDIS_URL, or ATRIUM_SINGLE_NODE=true "
                     "for a deployment of one pod")
    if not settings.chainlit_auth_secret:
        found.append("DATABASE_URL is PostgreSQL but CHAINLIT_AUTH_SECRET is not set, so each pod would sign browser "
                     "sessions with its own generated secret and replicas could not read each other's sessions: set "
                     "CHAINLIT_AUTH_SECRET to the same random value (e.g. `openssl rand -base64 48`) in every pod")
    return found


def require_sound(settings: Settings, *, serving: bool = True) -> None:
    """Raise StartupError listing every problem, or return."""
    found = problems(settings, serving=serving)
    if found:
        raise StartupError(found)
