"""A deployment group's `public_url` is written into nginx's configuration (`server_name`), the Gateway's
`hostnames` and the note a person reads in the chat: only an http(s) URL whose host is a DNS name (and whose path,
if any, is plain) is accepted. A host like `a.example.com;return 200 x` used to pass (urlsplit takes it) and became
an nginx directive of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

BAD = ["https://finance.example.com;return 200 owned", "https://finance.example.com%0a/", "https://a_b.example.com",
       "https://user:pw@finance.example.com", "https://finance.example.com/x?y=1", "https://finance.example.com/#x",
       "https://finance.example.com/a b", "https://finance.example.com/x)[click](https://evil.example.com",
       "https://finance.example.com:99999"]


def _config(tmp_path, url: str):
    cfg = tmp_path / "config"
    cfg.mkdir()
    for name in ("models.yaml", "demo_users.yaml"):
        (cfg / name).write_text((REPO / "config" / name).read_text())
    tenants = yaml.safe_load((REPO / "config" / "tenants.yaml").read_text())
    tenants["deployment_groups"]["regulated"]["public_url"] = url
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
    return cfg


def _nginx(cfg):
    return subprocess.run([sys.executable, "-m", "backend.cli", "deploy", "nginx", "--upstream", "default=127.0.0.1:1",
                           "--upstream", "regulated=127.0.0.1:2"], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ATRIUM_CONFIG_DIR": str(cfg)},
                          cwd=REPO)


@pytest.mark.parametrize("url", BAD)
def test_a_public_url_that_is_not_a_plain_dns_host_is_refused_naming_the_group(tmp_path, url):
    r = _nginx(_config(tmp_path, url))
    assert r.returncode != 0, r.stdout
    assert "server_name" not in r.stdout
    assert "deployment_groups: regulated" in r.stderr and "public_url" in r.stderr, r.stderr


def test_a_plain_public_url_renders(tmp_path):
    r = _nginx(_config(tmp_path, "https://Finance-2.example.com:8443/atrium/"))
    assert r.returncode == 0, r.stderr
    assert "server_name finance-2.example.com;" in r.stdout


@pytest.mark.parametrize("args", [["--upstream", "default=127.0.0.1:1; return 200 owned"],
                                  ["--upstream", "default=127.0.0.1:1\nserver evil.example.com:80"],
                                  ["--listen", "127.0.0.1:8080; return 200 owned"]])
def test_upstream_and_listen_addresses_are_host_and_port_only(tmp_path, args):
    cfg = _config(tmp_path, "https://finance.atrium.example.com")
    base = {"--upstream": ["default=127.0.0.1:1", "regulated=127.0.0.1:2"], "--listen": ["127.0.0.1:8080"]}
    base[args[0]] = [args[1]] + (base[args[0]][1:] if args[0] == "--upstream" else [])
    argv = [x for flag, values in base.items() for v in values for x in (flag, v)]
    r = subprocess.run([sys.executable, "-m", "backend.cli", "deploy", "nginx", *argv], capture_output=True,
                       text=True, timeout=120, cwd=REPO,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ATRIUM_CONFIG_DIR": str(cfg)})
    assert r.returncode != 0 and "return 200" not in r.stdout and "evil" not in r.stdout, r.stdout
    assert args[0] in r.stderr, r.stderr
