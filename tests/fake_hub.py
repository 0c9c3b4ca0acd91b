"""A stand-in for the Hugging Face Hub API on 127.0.0.1, for the upload calls.

It answers what ``huggingface_hub``'s ``create_repo`` and ``upload_folder``
ask (create the repository, check the card's YAML, pre-upload, commit) and
keeps every request, with the files of each commit decoded, so a test can
check what would have reached the Hub.  Files are always "regular" (sent in
the commit itself), never LFS or Xet.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HubRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeHub:
    """``with FakeHub() as hub:``; point ``HF_ENDPOINT`` at ``hub.url``.

    ``refuse``: the status every repository creation gets (None: 200).
    """

    refuse: int | None = None
    requests: list[HubRequest] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    url: str = ""

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def _reply(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> HubRequest:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = HubRequest(self.command, self.path, dict(self.headers), body)
                hub.requests.append(request)
                return request

            def do_GET(self) -> None:
                self._record()
                self._reply(404, {"error": "the fake Hub serves uploads only"})

            def do_POST(self) -> None:
                request = self._record()
                if self.path == "/api/repos/create":
                    if hub.refuse is not None:
                        return self._reply(hub.refuse, {"error": "You are not allowed to do that"})
                    payload = json.loads(request.body)
                    name = f"{payload['organization']}/{payload['name']}"
                    return self._reply(200, {"url": f"{hub.url}/datasets/{name}"})
                if self.path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(request.body)["files"]
                    return self._reply(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                if "/commit/" in self.path:
                    for line in request.body.decode().splitlines():
                        entry = json.loads(line)
                        if entry["key"] == "file":
                            value = entry["value"]
                            hub.files[value["path"]] = base64.b64decode(value["content"])
                    repo = self.path.split("/api/datasets/", 1)[1].split("/commit/", 1)[0]
                    return self._reply(
                        200,
                        {
                            "commitUrl": f"{hub.url}/datasets/{repo}/commit/{'0' * 40}",
                            "commitOid": "0" * 40,
                        },
                    )
                return self._reply(404, {"error": f"no such endpoint {self.path}"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
