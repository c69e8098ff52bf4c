"""`atrium` console script: serve, worker, keys, ingest, reindex, seed-demo, migrate, deploy, hash-password, eval."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from backend.settings import describe_invalid, get_settings


def _services(*, worker: bool = True):
    """The app's services; `worker=False` for commands that never ingest (no background thread)."""
    from backend.container import build_services
    from backend.logs import setup_logging

    settings = get_settings()
    if not worker:
        settings = settings.model_copy(update={"ingest_worker": False})
    setup_logging("WARNING")
    return build_services(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app import create_app
    from backend.serving import head_limited_protocol, proxy_options
    from backend.settings import proxy_list

    settings = get_settings()
    if (busy := _port_taken(args.host, args.port)) is not None:
        print(f"error: {args.host}:{args.port}: cannot listen there ({busy}): stop what uses it, or pass another "
              "--port", file=sys.stderr)
        return 2
    try:
        proxies = settings.trusted_proxy_list if args.forwarded_allow_ips is None \
            else proxy_list(args.forwarded_allow_ips)
    except ValueError as exc:
        print(f"error: --forwarded-allow-ips: {exc}", file=sys.stderr)
        return 2
    # Built before the banner: a configuration error (ConfigError, see main) stops here, without telling anyone
    # to open a server that never started.
    application = create_app(settings)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    # For the person at the terminal, on stdout: stderr carries only JSON log lines.
    print(serve_banner(settings, application.state.services.registry, f"http://{shown_host}:{args.port}"),
          flush=True)
    # log_config=None: uvicorn's own loggers go through our JSON-lines handler too.
    uvicorn.run(application, host=args.host, port=args.port, log_level="info", log_config=None,
                http=head_limited_protocol(settings.max_header_kb * 1024, settings.header_timeout_s),
                **proxy_options(proxies))
    return 0


def serve_banner(settings, registry, url: str) -> str:
    """What `atrium serve` tells the person at the terminal: where to open it, how to sign in, what it serves."""
    lines = [f"Atrium: open {url}"
             + (" — demo users in README.md (e.g. alice / atrium)" if settings.password_login_enabled else "")]
    if registry.served_groups is not None:
        groups = ", ".join(sorted(registry.served_groups))
        tenants = ", ".join(registry.ids()) or "none"
        lines.append(f"serving deployment group(s) {groups} (ATRIUM_DEPLOYMENT_GROUPS): tenants {tenants}; the other "
                     "groups' tenants are refused here (HTTP 421 naming their group)")
    if not settings.password_login_enabled and not settings.oidc_issuer:
        import logging

        fix = "set OIDC_ISSUER and OIDC_CLIENT_ID (README \"Connect your identity provider\"), or ATRIUM_DEV_LOGIN=true"
        logging.getLogger("atrium").warning("nobody can sign in to the chat", extra={"fix": fix})
        lines.append(f"nobody can sign in to the chat or the studio (no identity provider, demo login off): {fix}; "
                     "API keys still work")
    return "\n".join(lines)


def _port_taken(host: str, port: int) -> str | None:
    """Why the server could not listen at host:port, checked before the app is built (minutes of model loading
    for nothing otherwise), or None when it can."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def cmd_migrate(_args: argparse.Namespace) -> int:
    from backend.db.migrate import upgrade_or_explain

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_or_explain(settings.sql_url)
    print("database is at the latest schema")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from backend.container import build_services
    from backend.knowledge.worker_process import run_worker
    from backend.logs import setup_logging
    from backend.startup_checks import require_sound
    from backend.worker_metrics import MetricsPortError, worker_metrics

    # The jobs run in this process's main thread (run_worker), not in the app's background thread.
    settings = get_settings().model_copy(update={"ingest_worker": False})
    setup_logging(settings.log_level)
    require_sound(settings, serving=False)
    services = build_services(settings)
    try:
        with worker_metrics(services, host=args.metrics_host or settings.worker_metrics_host,
                            port=settings.worker_metrics_port if args.metrics_port is None else args.metrics_port):
            return run_worker(services.knowledge)
    except MetricsPortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        services.close()


def _tenant_services(tenant: str):  # noqa: ANN202 - Services, imported lazily like everything here
    """The services, or None after saying which tenants exist (the CLI's usual first check)."""
    services = _services(worker=False)
    if services.registry.get(tenant) is None:
        print(f"error: {services.registry.not_here(tenant)}", file=sys.stderr)
        return None
    return services


def cmd_keys_create(args: argparse.Namespace) -> int:
    from backend.auth.api_keys import issue_key, parse_scopes

    services = _tenant_services(args.tenant)
    if services is None:
        return 2
    try:
        scopes = parse_scopes(args.scopes)
        issued = issue_key(db=services.db, tenant=args.tenant, scopes=scopes, name=args.name, created_by="cli",
                           expires_in_days=args.expires_days, default_days=services.settings.api_key_days)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    expires_at = issued.key.expires_at
    services.audit.record("key_created", subject="cli", tenant=args.tenant, route="cli:keys create",
                          detail={"key_id": issued.key.id, "scopes": scopes, "name": args.name, "owner": "cli",
                                  "expires_at": expires_at.isoformat() if expires_at else None})
    until = f"until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "with no expiry"
    print(f"created key {issued.key.id} for tenant {args.tenant} with scopes {','.join(scopes)}, valid {until}; "
          "it is shown only once:")
    print(issued.token)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from backend.auth.key_owners import review_keys

    services = _tenant_services(args.tenant)
    if services is None:
        return 2
    reviews = review_keys(db=services.db, tenant=args.tenant, principal_of=services.principal_from_claims)
    if not reviews:
        print(f"tenant {args.tenant} has no API keys (create one: atrium keys create --tenant {args.tenant} ...)")
        return 0
    print(f"{'ID':<12}  {'STATE':<18} {'EXPIRES':<10} {'OWNER (STATUS)':<30} {'PARENT':<12} {'SCOPES':<40} "
          f"{'LAST USE':<27} NAME")
    for r in reviews:
        k = r.key
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else \
            f"expired {k.expires_at:%Y-%m-%d}" if r.state == "expired" and k.expires_at else "active"
        expires = f"{k.expires_at:%Y-%m-%d}" if k.expires_at else "never"
        owner = f"{k.owner or '-'} ({r.owner_status})"
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        print(f"{k.id:<12}  {state:<18} {expires:<10} {owner:<30} {k.parent_key_id or '-':<12} "
              f"{','.join(k.scopes):<40} {used:<27} {k.name or '-'}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from backend.auth.api_keys import revoke_key_lineage

    services = _services(worker=False)
    # No cache to clear here: a server replica forgets within ATRIUM_API_KEY_CACHE_SECONDS.
    revoked = revoke_key_lineage(db=services.db, tenant=args.tenant, key_id=args.key_id)
    if revoked is None:
        print(f"error: tenant {args.tenant} has no key {args.key_id}", file=sys.stderr)
        return 2
    key = revoked.key
    # Like DELETE /keys/{id}: each key this call revoked is audited once, nothing else.
    for kid in ([key.id] if revoked.revoked_now else []) + revoked.descendants_revoked:
        services.audit.record("key_revoked", subject="cli", tenant=args.tenant, route="cli:keys revoke",
                              detail={"key_id": kid, **({"via": key.id} if kid != key.id else {})})
    if revoked.revoked_now:
        print(f"revoked key {key.id}")
    else:
        print(f"key {key.id} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    if revoked.descendants_revoked:
        print(f"also revoked the keys made with it: {', '.join(revoked.descendants_revoked)}")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from backend.seed import seed_demo

    services = _services()
    return seed_demo(services, if_empty=args.if_empty)


def cmd_ingest(args: argparse.Namespace) -> int:
    from backend.knowledge.cli import ingest_paths

    services = _services()
    return ingest_paths(services, tenant=args.tenant, paths=args.paths, kb=args.kb)


def cmd_reindex(args: argparse.Namespace) -> int:
    from backend.knowledge.cli import reindex

    return reindex(_services(), tenant=args.tenant, include_failed=args.include_failed)


def cmd_deploy_render(args: argparse.Namespace) -> int:
    from backend.deploy.render import drift, render_tree, write_tree
    from backend.deploy.table import load_table

    config_dir = get_settings().config_dir
    table = load_table(config_dir)
    files = render_tree(table, config_dir)
    for group in table.groups:
        if not group.tenants:  # legitimate while a group is brought up before tenants move to it: not an error
            print(f"warning: deployment group {group.name!r} has no tenant: its pods will serve nobody; move tenants "
                  "to it (`deployment_group:`) or remove it from deployment_groups", file=sys.stderr)
    if args.check:
        problems = drift(files, args.out)
        for problem in problems:
            print(f"{args.out / problem}", file=sys.stderr)
        if problems:
            print("error: the manifests are not what tenants.yaml renders now: run `atrium deploy render`",
                  file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    write_tree(files, args.out)
    overlays = sorted({name.split("/")[1] for name in files if name.startswith("overlays/")})
    print(f"wrote {len(files)} files to {args.out}: base/ and overlays/{{{','.join(overlays)}}}/ "
          f"(set the image, then apply every group: README \"Operations at scale\", Deploying)")
    return 0


def cmd_deploy_nginx(args: argparse.Namespace) -> int:
    from backend.deploy.nginx import parse_upstreams, render_nginx
    from backend.deploy.table import load_table

    table = load_table(get_settings().config_dir)
    text = render_nginx(table, parse_upstreams(args.upstream, table), listen=args.listen)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def cmd_hash_password(_args: argparse.Namespace) -> int:
    from backend.auth.passwords import hash_password

    print(hash_password(getpass.getpass("password: ")))
    return 0


def _prompt_store():  # noqa: ANN202 - PromptStorage, imported lazily like everything here
    """The configured prompt store (files or the database, as `atrium serve` would use), without seeding it."""
    from backend.db.engine import Database, make_engine
    from backend.db.migrate import upgrade_or_explain
    from backend.prompts.factory import build_prompt_store

    settings = get_settings()
    if settings.prompt_store_kind == "database":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_or_explain(settings.sql_url)
    return build_prompt_store(settings, Database(make_engine(settings.sql_url)), seed=False)


def cmd_prompts_export(args: argparse.Namespace) -> int:
    from backend.prompts.exchange import export_store

    store = _prompt_store()
    written, unchanged = export_store(store, args.dir, say=lambda line: print(line, flush=True))
    print(f"exported {store.describe()} to {args.dir.absolute()}: {written} file(s) written, {unchanged} already "
          "equal")
    return 0


def _gated_tenants():  # noqa: ANN202 - Callable[[str], bool]
    """tenant id -> whether tenants.yaml gives it a release gate (every tenant of the file, served here or not)."""
    from backend.tenants import TenantRegistry

    registry = TenantRegistry.load(get_settings().config_dir / "tenants.yaml")
    return lambda tenant: any(t.id == tenant and t.release_gate.enabled for t in registry.every())


def _audit_gate_overrides(moves: list[dict], reason: str) -> None:
    """Each production move an operator forced past a release gate, audited as a tenant admin's override is."""
    from backend.db.engine import Database, make_engine
    from backend.governance.audit import AuditLog

    audit = AuditLog(db=Database(make_engine(get_settings().sql_url)))
    for m in moves:
        audit.record("release_gate_overridden", subject="cli", tenant=m["tenant"], route="cli:prompts import",
                     status=200, detail={"assistant": m["assistant"], "label": "production", "version": m["to"],
                                         "from": m["from"], "reason": reason[:1000],
                                         "message": "moved by `atrium prompts import` (no test run checked)"})


def cmd_prompts_import(args: argparse.Namespace) -> int:
    from backend.prompts.contract import ImportConflict
    from backend.prompts.exchange import FolderInvalid, gated_production_moves, import_folder, read_folder

    store = _prompt_store()
    try:
        moves = gated_production_moves(store, read_folder(args.dir), _gated_tenants())
    except FolderInvalid as exc:
        print("\n".join(f"error: {p}" for p in exc.problems) + "\nnothing was imported", file=sys.stderr)
        return 1
    reason = (args.override_gate or "").strip()
    if moves and not reason:
        # An import runs no tests: moving a gated tenant's production through it would skip the release gate.
        print("\n".join(f"error: {m['tenant']}/{m['assistant']}: the folder moves production from version "
                        f"{m['from']} to {m['to']}, but {m['tenant']} has a release gate: promote it in the studio "
                        f"or with PUT /api/t/{m['tenant']}/prompts/{m['assistant']}/labels/production (the gate "
                        "checks its test run), leave production as it is in labels.yaml, or pass --override-gate "
                        "REASON (audited)" for m in moves) + "\nnothing was imported", file=sys.stderr)
        return 1
    try:
        added, same, labels = import_folder(store, args.dir, say=lambda line: print(line, flush=True))
    except FolderInvalid as exc:
        print("\n".join(f"error: {p}" for p in exc.problems) + "\nnothing was imported", file=sys.stderr)
        return 1
    except ImportConflict as exc:
        print("\n".join(f"error: {p}" for p in exc.problems) + "\nnothing was imported", file=sys.stderr)
        return 1
    if moves:
        _audit_gate_overrides(moves, reason)
    if not added and not labels:
        print(f"nothing to import: {args.dir.absolute()} matches {store.describe()} ({same} version(s) unchanged)")
    else:
        print(f"imported {added} new version(s) and {labels} label file(s) into {store.describe()}; {same} "
              "version(s) were there already")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atrium", description="Atrium: a private AI assistant per department.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the app (chat, studio, API)", description=(
        "Serve the chat, the studio and the API. Configuration is the environment (README \"Configuration\"); "
        "ATRIUM_DEPLOYMENT_GROUPS=<group>[,<group>] serves only those deployment groups' tenants of tenants.yaml "
        "(unset: every group), the others' are refused with a 421 naming their group."))
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 in "
                                                          "a container)")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000")
    serve.add_argument("--forwarded-allow-ips", default=None, metavar="IPS",
                       help="peers whose X-Forwarded-For is believed (default: ATRIUM_TRUSTED_PROXIES, empty = none)")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    worker = sub.add_parser("worker", help="run the ingestion worker (queued uploads -> ready) until SIGTERM; any "
                            "number of them may run beside the app's pods", description=(
        "Ingest queued uploads (parse, chunk, embed) until SIGTERM, which finishes the batch in hand and hands the "
        "job back. Needs the web pods' DATABASE_URL (and vector store); with ATRIUM_DEPLOYMENT_GROUPS it takes only "
        "the jobs of those groups' tenants. With ATRIUM_METRICS_TOKEN set, serves GET /metrics (ingestion and "
        "process metrics) on its own port."))
    worker.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="port of the worker's /metrics (default: ATRIUM_WORKER_METRICS_PORT, 9464; 0: none)")
    worker.add_argument("--metrics-host", default=None, metavar="HOST",
                        help="address of the worker's /metrics (default: ATRIUM_WORKER_METRICS_HOST, 127.0.0.1)")
    worker.set_defaults(func=cmd_worker)

    keys = sub.add_parser("keys", help="tenant API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key (printed once, alone on the last line)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: chat,retrieval,ingest,"
                                                        "prompts:read,prompts:write,admin")
    create.add_argument("--name", default="")
    create.add_argument("--expires-days", type=int, default=None, metavar="DAYS",
                        help="days until the key stops working, 0 = never (default: ATRIUM_API_KEY_DAYS)")
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="a tenant's keys: id, state, expiry, owner and whether they still hold "
                                           "the rights (active/left/unknown), parent key, scopes, last use, name "
                                           "(never secrets)")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key and every key made with it")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys_revoke)

    ingest = sub.add_parser("ingest", help="add documents to a tenant's knowledge base")
    ingest.add_argument("--tenant", required=True)
    ingest.add_argument("--kb", default="default")
    ingest.add_argument("paths", nargs="+")
    ingest.set_defaults(func=cmd_ingest)

    reindex = sub.add_parser("reindex", help="chunk and embed the stored documents again (after an upgrade that "
                                             "changes chunking), with a progress bar")
    reindex.add_argument("--tenant", help="one tenant (default: every tenant)")
    reindex.add_argument("--include-failed", action="store_true",
                         help="also try again the documents that failed when added (skipped by default)")
    reindex.set_defaults(func=cmd_reindex)

    seed = sub.add_parser("seed-demo", help="load the demo knowledge bases")
    seed.add_argument("--if-empty", action="store_true", help="only when the data dir has no documents")
    seed.set_defaults(func=cmd_seed_demo)

    prompts = sub.add_parser("prompts", help="prompt versions as files (the exchange format, reviewable in git)"
                             ).add_subparsers(dest="prompts_command", required=True)
    export = prompts.add_parser("export", help="write every version and labels.yaml of the configured store to DIR")
    export.add_argument("dir", type=Path, metavar="DIR")
    export.set_defaults(func=cmd_prompts_export)
    importing = prompts.add_parser("import", help="add DIR's versions and labels to the configured store "
                                                  "(idempotent; a different text under an existing number is "
                                                  "refused, never overwritten)")
    importing.add_argument("dir", type=Path, metavar="DIR")
    importing.add_argument("--override-gate", metavar="REASON", default=None,
                           help="move production of a tenant with a release gate anyway (no test run is checked); "
                                "the reason is audited")
    importing.set_defaults(func=cmd_prompts_import)

    deploy = sub.add_parser("deploy", help="deployment manifests from tenants.yaml (README \"Operations at scale\")"
                            ).add_subparsers(dest="deploy_command", required=True)
    render = deploy.add_parser("render", help="write deploy/base/ and deploy/overlays/<group>/ (Kustomize) from "
                                              "tenants.yaml")
    render.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "deploy",
                        help="the deploy folder (default: the repository's deploy/)")
    render.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files differ")
    render.set_defaults(func=cmd_deploy_render)
    nginx = deploy.add_parser("nginx", help="the same routing as an nginx configuration (for its http {} block)")
    nginx.add_argument("--upstream", action="append", default=[], metavar="GROUP=HOST:PORT[,HOST:PORT]",
                       help="a group's `atrium serve` processes (once per group)")
    nginx.add_argument("--listen", default="127.0.0.1:8080", help="nginx's address (default: 127.0.0.1:8080)")
    nginx.add_argument("--output", "-o", type=Path, default=None, help="the file to write (default: stdout)")
    nginx.set_defaults(func=cmd_deploy_nginx)

    sub.add_parser("hash-password", help="hash a demo user's password").set_defaults(func=cmd_hash_password)
    from backend.evals.cli import add_eval_commands  # `atrium eval run|import|export` (issue 19)

    add_eval_commands(sub, lambda: _services(worker=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    from backend.config_files import ConfigError

    args = build_parser().parse_args(argv)
    try:
        rc = int(args.func(args) or 0)
    except BrokenPipeError:
        # `atrium keys list | head`: a reader that stops early is not an error. Not SIGPIPE's default action:
        # that would also kill `atrium serve` whenever a browser closes a connection mid-answer.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        rc = 0
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        print(describe_invalid(exc), file=sys.stderr)
        return 2
    except ConfigError as exc:  # `<absolute file>: <what>: <fix>`, one line instead of a traceback
        print(f"error: {exc}", file=sys.stderr, flush=True)
        rc = 2
    if args.command != "serve" or rc != 0:
        # Everything is committed by now. Skip interpreter teardown: LiteLLM's HTTP clients' finalizers can
        # deadlock on the import lock at shutdown, leaving a finished (or refused) command hanging.
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # the reader stopped early (`| head`): what it read is all it wanted
            pass
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
