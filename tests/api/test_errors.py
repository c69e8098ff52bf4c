"""Bad requests get a 4xx in the app's error shape with a reason a caller can act on."""

from __future__ import annotations


def test_unknown_route_and_wrong_method(api_client, login_as):
    r = api_client.get("/api/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "/docs" in r.json()["detail"]
    r = api_client.get("/api/t/sales/chat", cookies=login_as("alice"))
    assert r.status_code == 405 and r.json() == {"error": "method_not_allowed",
                                                  "detail": "GET is not allowed on /api/t/sales/chat"}


def test_broken_json_and_wrong_body_shape(api_client, login_as):
    cookies = login_as("alice")
    r = api_client.post("/api/t/sales/chat", content=b'{"assistant": "sales-assistant", "message": ',
                        headers={"content-type": "application/json"}, cookies=cookies)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert r.json()["detail"].startswith("the request body is not valid JSON")
    r = api_client.post("/api/t/sales/chat", json=["not", "an", "object"], cookies=cookies)
    assert r.status_code == 422 and r.json()["detail"].startswith("the request body: ")
    r = api_client.post("/api/t/sales/chat", json={"assistant": "sales-assistant"}, cookies=cookies)
    assert r.status_code == 422 and r.json()["detail"] == "message: Field required"


def test_unknown_assistant_is_a_404_naming_it(api_client, login_as):
    r = api_client.post("/api/t/sales/chat", json={"assistant": "nope", "message": "hi"}, cookies=login_as("alice"))
    assert r.status_code == 404
    assert r.json() == {"error": "assistant_not_found", "detail": "tenant 'sales' has no assistant 'nope'"}
