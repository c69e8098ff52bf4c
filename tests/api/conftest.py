"""Fixtures shared by the API tests."""

from __future__ import annotations

import pytest

from tests.auth.jwks_server import JwksServer, SigningKey


@pytest.fixture(scope="module")
def idp():
    """An identity provider's JWKS endpoint (one RSA key) for bearer-JWT callers; one per test module."""
    server = JwksServer([SigningKey("RSA")])
    yield server
    server.close()
