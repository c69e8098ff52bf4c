"""A local HTTP server speaking Pinecone's data-plane protocol (the requests SDK 10.x sends to an index
host): POST /vectors/upsert, POST /query, POST /vectors/delete, POST /describe_index_stats, GET /vectors/list.

It checks the `Api-Key` header and records every request, so tests can assert that each one named a
namespace. Vectors live per namespace; query ranks by cosine similarity and applies $eq/$in filters.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


def _match(meta: dict, flt: dict | None) -> bool:
    for key, cond in (flt or {}).items():
        if isinstance(cond, dict):
            for op, value in cond.items():
                if op == "$eq" and meta.get(key) != value:
                    return False
                if op == "$in" and meta.get(key) not in value:
                    return False
        elif meta.get(key) != cond:
            return False
    return True


class FakePinecone:
    def __init__(self, api_key: str = "pc-test-key", dimension: int = 384) -> None:
        self.api_key = api_key
        self.dimension = dimension
        self.namespaces: dict[str, dict[str, dict]] = {}
        self.requests: list[dict] = []  # {"method", "path", "body", "query"}
        self.fail_next = 0  # answer that many upserts with 503 (an outage)
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with fake.lock:
                    fake.requests.append({"method": method, "path": url.path, "body": body, "query": query,
                                          "api_key": self.headers.get("Api-Key")})
                if self.headers.get("Api-Key") != fake.api_key:
                    self._reply(401, {"code": 16, "message": "Invalid API Key", "details": []})
                    return
                try:
                    status, reply = fake.dispatch(method, url.path, body, query)
                except KeyError as exc:
                    status, reply = 400, {"code": 3, "message": f"missing {exc}", "details": []}
                self._reply(status, reply)

            def do_POST(self) -> None:
                self._handle("POST")

            def do_GET(self) -> None:
                self._handle("GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def dispatch(self, method: str, path: str, body: dict, query: dict) -> tuple[int, dict]:
        with self.lock:
            if path == "/vectors/upsert":
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return 503, {"code": 14, "message": "Service unavailable", "details": []}
                ns = self.namespaces.setdefault(body.get("namespace", ""), {})
                for v in body["vectors"]:
                    if len(v["values"]) != self.dimension:
                        return 400, {"code": 3, "message": f"Vector dimension {len(v['values'])} does not match "
                                                           f"the dimension of the index {self.dimension}"}
                    ns[v["id"]] = {"values": v["values"], "metadata": v.get("metadata") or {}}
                return 200, {"upsertedCount": len(body["vectors"])}
            if path == "/query":
                ns = self.namespaces.get(body.get("namespace", ""), {})
                scored = [(vid, _cos(body["vector"], rec["values"]), rec) for vid, rec in ns.items()
                          if _match(rec["metadata"], body.get("filter"))]
                scored.sort(key=lambda t: -t[1])
                matches = [{"id": vid, "score": score, "values": [],
                            **({"metadata": rec["metadata"]} if body.get("includeMetadata") else {})}
                           for vid, score, rec in scored[: body["topK"]]]
                return 200, {"matches": matches, "namespace": body.get("namespace", ""), "usage": {"readUnits": 5}}
            if path == "/vectors/delete":
                ns = self.namespaces.get(body.get("namespace", ""), {})
                if body.get("deleteAll"):
                    ns.clear()
                for vid in body.get("ids") or []:
                    ns.pop(vid, None)
                return 200, {}
            if path == "/describe_index_stats":
                return 200, {"namespaces": {n: {"vectorCount": len(v)} for n, v in self.namespaces.items()},
                             "dimension": self.dimension, "indexFullness": 0.0,
                             "totalVectorCount": sum(len(v) for v in self.namespaces.values())}
            if path == "/vectors/list":
                ns = self.namespaces.get(query.get("namespace", ""), {})
                prefix = query.get("prefix", "")
                ids = sorted(i for i in ns if i.startswith(prefix))
                return 200, {"vectors": [{"id": i} for i in ids], "namespace": query.get("namespace", ""),
                             "usage": {"readUnits": 1}}
        return 404, {"code": 5, "message": f"unknown path {path}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
