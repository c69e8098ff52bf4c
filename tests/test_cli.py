"""The `atrium` console script, run as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import sqlalchemy as sa

from tests.conftest import REPO


def _atrium(data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_keys_create_prints_the_key_alone_on_the_last_line_and_stores_only_a_hash(data_dir, make_settings):
    out = _atrium(data_dir, "keys", "create", "--tenant", "sales", "--scopes", "chat,retrieval")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("atr_") and " " not in token

    from backend.auth.api_keys import verify_key
    from backend.db.engine import Database, make_engine

    db = Database(make_engine(make_settings().sql_url))
    key = verify_key(db=db, token=token)
    assert key.tenant == "sales" and key.scopes == ["chat", "retrieval"]
    with db.engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(sa.text("select * from api_key")) for v in row)
    secret = token.split("_", 2)[2]
    assert secret not in dump and key.key_hash in dump
    db.engine.dispose()

    listed = _atrium(data_dir, "keys", "list", "--tenant", "sales")
    assert listed.returncode == 0, listed.stderr
    assert key.id in listed.stdout and "active" in listed.stdout and "chat,retrieval" in listed.stdout
    assert listed.stdout.splitlines()[0].split() == ["ID", "STATE", "EXPIRES", "OWNER", "(STATUS)", "PARENT",
                                                     "SCOPES", "LAST", "USE", "NAME"]
    assert secret not in listed.stdout
    assert _atrium(data_dir, "keys", "revoke", "--tenant", "sales", key.id).returncode == 0
    assert "revoked" in _atrium(data_dir, "keys", "list", "--tenant", "sales").stdout
    assert "no API keys" in _atrium(data_dir, "keys", "list", "--tenant", "finance").stdout


def test_keys_create_rejects_unknown_tenant_and_scope(data_dir):
    bad_tenant = _atrium(data_dir, "keys", "create", "--tenant", "marketing", "--scopes", "chat")
    assert bad_tenant.returncode == 2 and "unknown tenant 'marketing'" in bad_tenant.stderr
    bad_scope = _atrium(data_dir, "keys", "create", "--tenant", "sales", "--scopes", "chat,root")
    assert bad_scope.returncode == 2 and "unknown scope(s) root" in bad_scope.stderr


def test_ingest_refusals_are_one_error_line_and_exit_code_2(data_dir, tmp_path):
    doc = tmp_path / "file.md"
    doc.write_text("# Notes\n\nSome text.\n")
    for args, message in ((["--kb", "../x"], "error: knowledge base name '../x' must be up to 63 ASCII letters"),
                          (["--kb", "Bad KB"], "error: knowledge base name 'Bad KB' must be")):
        out = _atrium(data_dir, "ingest", "--tenant", "sales", *args, str(doc))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().startswith(message), out.stderr


def test_migrate_command(data_dir):
    out = _atrium(data_dir, "migrate")
    assert out.returncode == 0 and "latest schema" in out.stdout
    assert (data_dir / "atrium.db").is_file()


def test_a_bad_setting_is_one_line_naming_it_and_an_empty_one_is_unset(data_dir, tmp_path):
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir), "ATRIUM_DEV_LOGIN": "maybe"}
    done = subprocess.run([sys.executable, "-m", "backend.cli", "migrate"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ATRIUM_DEV_LOGIN='maybe': Input should be a valid boolean" in done.stderr
    # `ATRIUM_LOCAL_MODEL_PATH=` uncommented from .env.example: the bundled model, not "not installed".
    env.update(ATRIUM_DEV_LOGIN="", ATRIUM_LOCAL_MODEL_PATH="")
    done = subprocess.run([sys.executable, "-c", "from backend.settings import Settings; s = Settings(); "
                           "print(s.local_model_path, s.dev_login)"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["None", "None"], done.stderr  # None = the default


def test_provider_keys_in_dot_env_make_their_tiers_live(tmp_path):
    """.env.example says "copy to .env": its provider keys must reach LiteLLM and models.yaml too."""
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dot-env\nATRIUM_CONFIG_DIR=" + str(REPO / "config") + "\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["ATRIUM_DATA_DIR"] = str(tmp_path / "data")
    script = ("import os; from backend.settings import get_settings; from backend.llm.router import ModelsConfig, "
              "live_deployments; s = get_settings(); "
              "live = live_deployments(ModelsConfig.load(s.config_dir / 'models.yaml'), s, local_available=True); "
              "print(sorted(live.live), os.environ['OPENAI_API_KEY'])")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "sk-from-dot-env" and "'fast'" in done.stdout and "'smart'" in done.stdout
    # The real environment wins over the file.
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "sk-real"})
    assert done.stdout.split()[-1] == "sk-real", done.stderr[-2000:]


def _serve(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """`atrium serve` from `tmp_path` (relative paths in env are relative to it) with a free port."""
    from tests.conftest import _SCRUB, free_port

    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update(ATRIUM_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--port", str(free_port())], cwd=tmp_path,
                          env=full, capture_output=True, text=True, timeout=120)


def _config(tmp_path, name: str, edit) -> None:  # noqa: ANN001 - a str -> str function
    shutil.copytree(REPO / "config", tmp_path / "cfg", dirs_exist_ok=True)
    path = tmp_path / "cfg" / name
    path.write_text(edit(path.read_text()))


def _error_line(done: subprocess.CompletedProcess) -> str:
    """The one non-JSON line of stderr, after checking that nothing started and nothing else was said."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Atrium: open" not in done.stdout + done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if not ln.startswith("{")]
    return line


def test_serve_refuses_a_config_typo_in_one_line_naming_the_absolute_file_before_any_banner(tmp_path):
    _config(tmp_path, "tenants.yaml", lambda t: t.replace("    assistants:\n", "    asistants:\n", 1))
    line = _error_line(_serve(tmp_path, ATRIUM_CONFIG_DIR="cfg"))  # a relative dir: the error is absolute
    assert line == (f"error: {tmp_path / 'cfg' / 'tenants.yaml'}: tenant 'sales': unknown key `asistants`: "
                    "did you mean `assistants`?")


def test_serve_names_the_file_and_line_of_a_yaml_syntax_error(tmp_path):
    _config(tmp_path, "models.yaml", lambda t: t.replace("  - model_name: local\n", "  - model_name: local\n bad\n"))
    line = _error_line(_serve(tmp_path, ATRIUM_CONFIG_DIR=str(tmp_path / "cfg")))
    assert line.startswith(f"error: {tmp_path / 'cfg' / 'models.yaml'}: invalid YAML at line ")


def test_serve_with_an_unreachable_database_is_one_line_without_the_password(tmp_path):
    # A one-pod deployment (startup_checks.py would otherwise stop it first, for its missing shared parts).
    line = _error_line(_serve(tmp_path, DATABASE_URL="postgresql://atrium:s3cret@127.0.0.1:1/atrium",
                              ATRIUM_SINGLE_NODE="true", CHAINLIT_AUTH_SECRET="s" * 48))
    assert line.startswith("error: DATABASE_URL (postgresql+psycopg://atrium:***@127.0.0.1:1/atrium): cannot "
                           "connect (") and "check the host, port, user and password" in line
    assert "s3cret" not in line


def test_serve_on_a_port_in_use_is_one_line_before_anything_loads(tmp_path):
    import socket

    from tests.conftest import _SCRUB

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env.update(ATRIUM_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
        done = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--port", str(port)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Atrium: open" not in done.stdout
    assert _error_line(done).startswith(f"error: 127.0.0.1:{port}: cannot listen there (")
    assert "stop what uses it, or pass another --port" in done.stderr


def test_serve_prints_the_banner_and_info_lines_on_stdout_and_warnings_on_stderr(tmp_path):
    """Cloud Logging's shape: `severity` and `message`, INFO on stdout (stderr without a severity reads as ERROR on
    GKE), WARNING and above on stderr; a request's lines carry its request id, also sent back as X-Request-ID."""
    import json
    import time

    import httpx

    from tests.conftest import _SCRUB, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    # No demo users file: a WARNING at start-up, which must go to stderr.
    env.update(ATRIUM_DATA_DIR=str(tmp_path / "data"), ATRIUM_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
               ATRIUM_CONFIG_DIR=str(_config_without_demo_users(tmp_path)))
    out, err = (tmp_path / "stdout").open("w"), (tmp_path / "stderr").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        kept = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "probe-42.a_b"}, timeout=10)
        made = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "no spaces allowed"},
                         timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert kept.headers["x-request-id"] == "probe-42.a_b"
    assert made.headers["x-request-id"] != "no spaces allowed" and len(made.headers["x-request-id"]) == 32
    stdout, stderr = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    banner = f"Atrium: open http://127.0.0.1:{port} — demo users in README.md"
    assert [ln for ln in stdout.splitlines() if not ln.startswith("{")][0].startswith(banner), stdout + stderr
    out_lines = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    err_lines = [json.loads(ln) for ln in stderr.splitlines()]  # every line of stderr is a JSON log line
    assert all("severity" in e and "message" in e and "msg" not in e and "level" not in e
               for e in out_lines + err_lines)
    assert {e["severity"] for e in out_lines} <= {"INFO", "DEBUG"}
    assert err_lines and {e["severity"] for e in err_lines} <= {"WARNING", "ERROR", "CRITICAL"}
    assert any(e["message"] == "atrium started" for e in out_lines)
    assert any(e["message"] == "demo login is on but there are no demo users" for e in err_lines)
    access = [e for e in out_lines if e.get("request_id") == "probe-42.a_b"]
    assert access and all(len(e["trace_id"]) == 32 for e in access)
    assert any("GET /healthz" in e["message"] for e in access), access


def _config_without_demo_users(tmp_path):
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "config", cfg)
    (cfg / "demo_users.yaml").unlink(missing_ok=True)
    return cfg


def test_a_reader_that_stops_early_is_no_error(data_dir, make_settings):
    """`atrium keys list | head -1`: no BrokenPipeError traceback, exit 0. (Not by restoring SIGPIPE's default
    action, which killed `atrium serve` whenever a browser closed a connection mid-answer.)"""
    from backend.auth.api_keys import issue_key
    from backend.db.engine import Database, make_engine
    from backend.db.migrate import upgrade

    url = make_settings().sql_url
    upgrade(url)
    db = Database(make_engine(url))
    for i in range(600):  # a listing far longer than a pipe holds (64 KiB): the writer meets the closed end
        issue_key(db=db, tenant="sales", scopes=["chat"], name=f"key {i} " + "x" * 90, created_by="cli")
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "keys", "list", "--tenant", "sales"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and first and "Traceback" not in stderr, stderr

