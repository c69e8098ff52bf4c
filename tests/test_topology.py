"""The manifests' topology, on this machine: nginx (its configuration rendered by `atrium deploy nginx` from the same
routing table as deploy/'s routes) in front of deployment group `default` × 2 `atrium serve` and group `regulated`
× 1, one `atrium worker` per group, each process started with ATRIUM_DEPLOYMENT_GROUPS=<its group> as the overlays
start them, on a fresh PostgreSQL database (migrated first by `atrium migrate`, as the migration Job does; the
processes run with ATRIUM_MIGRATE_ON_START=false) and Redis.

What is shown comes from the processes themselves, not from the configuration: each one logs the requests it served
(a probe id, sent as X-Request-ID, names each request in the access log), `/healthz` names its groups and instance,
a process refuses another group's tenant (421 naming the group), and each worker logs the jobs it claims.

PostgreSQL here is the machine's (ATRIUM_TEST_POSTGRES_URL, no pgvector): the processes keep vectors in their own
data dirs (VECTOR_STORE=sqlite, which the start-up checks allow with ATRIUM_SINGLE_NODE=true); nothing below
searches across processes."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.conftest import REPO, LiveServer, free_port
from tests.llm.fakes import make_config_dir, mock
from tests.test_replicas import _clean_up, _redis_url, _spawn, _wait_up

pytestmark = pytest.mark.slow

SECRET = "topology-" + "t" * 48
ANSWER = "Routed by group."
GROUP_OF = {"sales": "default", "engineering": "default", "finance": "regulated"}
PROBES = itertools.count(random.randrange(500_000, 900_000))
DOC = b"# Travel policy\n\nTrain travel under four hours is preferred to flights for every trip.\n"


@dataclass
class Topology:
    nginx_url: str
    hosts: dict[str, str]  # group -> its public host
    servers: dict[str, list[LiveServer]]  # group -> its `atrium serve` processes
    workers: dict[str, tuple[subprocess.Popen, Path]]  # group -> its `atrium worker` and log
    keys: dict[str, str]  # tenant -> an API key
    nginx_log: Path
    db_url: str
    all_servers: list[LiveServer] = field(default_factory=list)

    def via(self, host_group: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A request through nginx, for the host of `host_group`."""
        headers = {"Host": self.hosts[host_group], **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, f"{self.nginx_url}{path}", headers=headers, timeout=60, **kwargs)

    def api_headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}", "X-Tenant-ID": tenant}

    def served(self, probe: str) -> list[str]:
        """The servers (by their URL) whose access log has a request whose X-Request-ID was `probe` (the access
        log keeps no query values)."""
        mark = f'"request_id": "{probe}"'
        return [s.url for s in self.all_servers
                if any(mark in line for line in s.log_path.read_text(errors="replace").splitlines()
                       if '"uvicorn.access"' in line)]

    def group_urls(self, group: str) -> set[str]:
        return {s.url for s in self.servers[group]}


def _nginx_conf(tmp: Path, include: Path, log: Path) -> Path:
    """A whole nginx.conf around the rendered `http {}` part: foreground, unprivileged ports, everything in `tmp`."""
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log {log};
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {include};
}}
""")
    return conf


def _start_nginx(tmp: Path, conf: Path, port: int) -> subprocess.Popen:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.fail("nginx is not installed: scripts/test-deps.sh installs it (apt-get install -y nginx)")
    proc = subprocess.Popen([nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "nginx.stderr").open("w"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: {(tmp / 'nginx.stderr').read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("nginx did not start")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Topology]:

    admin_url = os.environ.get("ATRIUM_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("PostgreSQL not available: set ATRIUM_TEST_POSTGRES_URL (make test does when 127.0.0.1:5432 "
                    "answers)")
    redis_url = _redis_url(worker_id)
    prefix = f"atrium-topology-{uuid.uuid4().hex[:10]}"
    name = f"atrium_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    tmp = tmp_path_factory.mktemp("topology")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-sonnet-5-5", ANSWER)],
                          policy={"allowed_tiers": ["fast"]})
    groups = yaml.safe_load((cfg / "tenants.yaml").read_text())["deployment_groups"]
    hosts = {g: httpx.URL(body["public_url"]).host for g, body in groups.items()}
    assert set(hosts) == {"default", "regulated"}
    shared = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "ATRIUM_REDIS_PREFIX": prefix,
              "CHAINLIT_AUTH_SECRET": SECRET, "ATRIUM_CONFIG_DIR": str(cfg), "VECTOR_STORE": "sqlite",
              "ATRIUM_SINGLE_NODE": "true", "ATRIUM_MIGRATE_ON_START": "false"}
    started: list[subprocess.Popen] = []
    try:
        # The migration Job, then the Deployments (which only check that the schema is current).
        migrate, migrate_log, _ = _spawn(tmp, "migrate", ["migrate"], shared)
        assert migrate.wait(120) == 0, migrate_log.read_text()[-3000:]

        servers: dict[str, list[LiveServer]] = {"default": [], "regulated": []}
        for group, label in (("default", "default-a"), ("default", "default-b"), ("regulated", "regulated-a")):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc, log, env = _spawn(tmp, label, ["serve", "--host", "127.0.0.1", "--port", str(port)], {
                **shared, "ATRIUM_DEPLOYMENT_GROUPS": group, "ATRIUM_INGEST_WORKER": "false",
                "ATRIUM_PUBLIC_URL": groups[group]["public_url"], "ATRIUM_TRUSTED_PROXIES": "127.0.0.1"})
            started.append(proc)
            servers[group].append(LiveServer(url=url, data_dir=Path(env["ATRIUM_DATA_DIR"]), env=env, process=proc,
                                             log_path=log))
        everyone = [s for group in servers.values() for s in group]
        _wait_up(everyone)
        workers = {}
        for group in servers:
            proc, log, _ = _spawn(tmp, f"worker-{group}", ["worker"], {**shared, "ATRIUM_DEPLOYMENT_GROUPS": group})
            started.append(proc)
            workers[group] = (proc, log)

        nginx_port = free_port()
        routing = tmp / "atrium-nginx.conf"
        rendered = subprocess.run(
            [sys.executable, "-m", "backend.cli", "deploy", "nginx",
             "--listen", f"127.0.0.1:{nginx_port}", "-o", str(routing),
             *[f"--upstream={g}={','.join(s.url.removeprefix('http://') for s in servers[g])}" for g in servers]],
            env=everyone[0].env, cwd=REPO, capture_output=True, text=True,
            timeout=120)
        assert rendered.returncode == 0, rendered.stderr
        nginx_log = tmp / "nginx-access.log"
        nginx = _start_nginx(tmp, _nginx_conf(tmp, routing, nginx_log), nginx_port)
        started.append(nginx)

        db = Database(make_engine(db_url))
        try:
            keys = {t: issue_key(db=db, tenant=t, scopes=["chat", "retrieval", "ingest"]).token for t in GROUP_OF}
        finally:
            db.engine.dispose()
        yield Topology(nginx_url=f"http://127.0.0.1:{nginx_port}", hosts=hosts, servers=servers, workers=workers,
                       keys=keys, nginx_log=nginx_log, db_url=db_url, all_servers=everyone)
    finally:
        _clean_up(started, redis_url=redis_url, prefix=prefix, admin=admin, database=name)


def test_each_tenants_api_reaches_only_its_groups_processes_on_every_host(topology):
    for tenant, group in GROUP_OF.items():
        for host_group in topology.hosts:
            seen: set[str] = set()
            for _ in range(40):  # spread at random over a group's processes: until every one has answered
                probe = f"probe-{next(PROBES)}"  # a request id no other request has
                r = topology.via(host_group, "GET", f"/api/t/{tenant}/documents",
                                 headers={**topology.api_headers(tenant), "X-Request-ID": probe})
                assert r.status_code == 200, (tenant, host_group, r.status_code, r.text)
                served = topology.served(probe)
                assert len(served) == 1 and served[0] in topology.group_urls(group), (tenant, host_group, served)
                seen.update(served)
                if seen == topology.group_urls(group):
                    break
            assert seen == topology.group_urls(group), (tenant, host_group, seen)


def test_each_groups_pages_are_served_by_its_host(topology):
    for group in topology.hosts:
        instances = set()
        for _ in range(40):  # until every process of the group has answered
            health = topology.via(group, "GET", "/healthz")
            assert health.status_code == 200, health.text
            body = health.json()
            assert body["deployment_groups"] == [group], body
            instances.add(body["instance"])
            probe = uuid.uuid4().hex
            page = topology.via(group, "GET", "/chat/", headers={"X-Request-ID": probe})
            assert page.status_code == 200, page.text
            served = topology.served(probe)
            assert len(served) == 1 and served[0] in topology.group_urls(group), served
            if len(instances) == len(topology.servers[group]):
                break
        assert len(instances) == len(topology.servers[group])  # every process of the group, and only those
    other = httpx.get(f"{topology.nginx_url}/healthz", headers={"Host": "elsewhere.example.org"}, timeout=30)
    assert other.status_code == 404  # a host no group has: nobody's pages


def test_a_chat_session_sticks_to_one_process_of_its_group(topology):
    """The chat page sets the `X-Chainlit-Session-id` cookie before it opens its socket: nginx hashes on it, so a
    session's long-polling requests reach the process holding the socket; different sessions spread out."""
    instances_by_session: dict[str, set[str]] = {}
    for _ in range(24):
        sid = str(uuid.uuid4())
        instances_by_session[sid] = {
            topology.via("default", "GET", "/healthz", cookies={"X-Chainlit-Session-id": sid}).json()["instance"]
            for _ in range(5)}
        if len({i for s in instances_by_session.values() for i in s}) == 2 and len(instances_by_session) >= 4:
            break
    assert all(len(s) == 1 for s in instances_by_session.values()), instances_by_session
    assert len({i for s in instances_by_session.values() for i in s}) == 2  # the sessions use both processes

    # A real socket.io session over long-polling through nginx: every request of it reaches the process holding it
    # (without the affinity every other request would reach the other process, which knows no such session).
    # As a browser signs in: its Origin carries the port nginx listens on, which the app must see in Host too.
    origin = f"http://{topology.hosts['default']}:{httpx.URL(topology.nginx_url).port}"
    login = topology.via("default", "POST", "/chat/login", data={"username": "alice", "password": "atrium"},
                         headers={"Origin": origin, "Host": origin.removeprefix("http://")})
    assert login.status_code == 200, login.text
    sid = str(uuid.uuid4())
    cookies = {**dict(login.cookies), "X-Chainlit-Session-id": sid}
    path = "/chat/ws/socket.io/"
    handshake = topology.via("default", "GET", path, cookies=cookies, params={"EIO": "4", "transport": "polling"})
    assert handshake.status_code == 200, handshake.text
    polling = {"EIO": "4", "transport": "polling", "sid": json.loads(handshake.text[1:])["sid"]}
    auth = {"clientType": "webapp", "sessionId": sid, "threadId": None, "userEnv": "{}",
            "chatProfile": "sales/sales-assistant"}
    sent = topology.via("default", "POST", path, cookies=cookies, params=polling, content="40" + json.dumps(auth))
    assert sent.text == "OK", sent.text
    connected = topology.via("default", "GET", path, cookies=cookies, params=polling)
    assert connected.text.startswith("40"), connected.text  # the namespace connected, as alice
    for _ in range(6):  # Engine.IO pongs: "OK" only from the process that holds this session id
        r = topology.via("default", "POST", path, cookies=cookies, params=polling, content="3")
        assert (r.status_code, r.text) == (200, "OK"), r.text
    topology.via("default", "POST", path, cookies=cookies, params=polling, content="41")


def test_a_process_asked_directly_for_another_groups_tenant_refuses_naming_the_group(topology):
    for group, servers in topology.servers.items():
        for server in servers:
            for tenant, owner in GROUP_OF.items():
                r = httpx.get(f"{server.url}/api/t/{tenant}/documents", headers=topology.api_headers(tenant),
                              timeout=30)
                if owner == group:
                    assert r.status_code == 200, r.text
                else:
                    assert r.status_code == 421, (server.url, tenant, r.status_code, r.text)
                    assert owner in r.text and topology.hosts[owner] in r.text, r.text


def test_a_groups_worker_never_takes_another_groups_job(topology):
    uploaded: dict[str, str] = {}  # document id -> tenant
    for _ in range(2):
        for tenant in GROUP_OF:
            r = topology.via(GROUP_OF[tenant], "POST", f"/api/t/{tenant}/documents",
                             headers=topology.api_headers(tenant), files={"file": ("travel.md", DOC, "text/markdown")})
            assert r.status_code == 202, r.text
            for d in r.json()["documents"]:
                uploaded[d["id"]] = tenant

    def status(doc_id: str) -> str:
        tenant = uploaded[doc_id]
        r = topology.via(GROUP_OF[tenant], "GET", f"/api/t/{tenant}/documents/{doc_id}",
                         headers=topology.api_headers(tenant))
        assert r.status_code == 200, r.text
        return r.json()["status"]

    deadline = time.monotonic() + 240
    pending = set(uploaded)
    while pending and time.monotonic() < deadline:
        for proc, log in topology.workers.values():
            assert proc.poll() is None, log.read_text()[-3000:]
        pending = {d for d in pending if status(d) != "ready"}
        time.sleep(0.5)
    assert not pending, {g: log.read_text()[-2000:] for g, (_, log) in topology.workers.items()}
    for group, (_, log) in topology.workers.items():
        claimed = [json.loads(line) for line in log.read_text(errors="replace").splitlines()
                   if line.startswith("{") and json.loads(line).get("message") == "ingestion job claimed"]
        assert claimed, f"worker {group} claimed nothing"
        assert {c["tenant"] for c in claimed} <= {t for t, g in GROUP_OF.items() if g == group}, claimed
    claims = [json.loads(line)["document_id"] for _, log in topology.workers.values()
              for line in log.read_text(errors="replace").splitlines()
              if line.startswith("{") and json.loads(line).get("message") == "ingestion job claimed"]
    assert sorted(claims) == sorted(uploaded)  # each job once, by its group's worker
