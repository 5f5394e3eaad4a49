"""A local Anthropic-compatible API for the Claude Code tests: `python3 anthropic_stub.py ...`.

Runs in a test container (standard library only) as `api.anthropic.com` over TLS with a test CA.
It answers `/v1/messages` with and without streaming (SSE), and scripts one tool call: a user
message containing `REQUEST_APPROVAL` gets a `tool_use` of the bottle's approval tool, and the
tool's result is echoed back as the final answer. Every request (method, path, headers, body) is
appended to a JSON-lines log that the tests read; requests without the expected key get the
API's own 401, as the real service would answer.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

APPROVAL_TRIGGER = "REQUEST_APPROVAL"
APPROVAL_TOOL = "mcp__supervise__request_approval"
APPROVAL_ACTION = "deploy the stub build to staging"
REPLY_PREFIX = "stub-reply:"


def last_user_content(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of the conversation's last user message (strings made into blocks)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return [{"type": "text", "text": content}]
            return [block for block in content or [] if isinstance(block, dict)]
    return []


def block_text(block: dict[str, Any]) -> str:
    content = block.get("content", block.get("text", ""))
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def scripted_reply(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant's content blocks for this conversation: the script of the tests."""
    blocks = last_user_content(body)
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if results:
        answer = " ".join(block_text(b) for b in results)
        return [{"type": "text", "text": f"{REPLY_PREFIX} the supervisor answered: {answer}"}]
    said = " ".join(block_text(b) for b in blocks if b.get("type") == "text")
    # Claude Code may list MCP tools lazily (tool search); a request that offers any tools is
    # the agent's main loop, which can call them all.
    if APPROVAL_TRIGGER in said and body.get("tools"):
        return [
            {
                "type": "tool_use",
                "id": "toolu_" + uuid.uuid4().hex[:24],
                "name": APPROVAL_TOOL,
                "input": {"action": APPROVAL_ACTION, "reason": "the test script asks for it"},
            }
        ]
    return [{"type": "text", "text": f"{REPLY_PREFIX} pong"}]


def message_for(body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-stub"),
        "content": content,
        "stop_reason": "tool_use" if content[0]["type"] == "tool_use" else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def sse_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The Messages API's streaming events for a finished message."""
    start = {**message, "content": [], "stop_reason": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubServer

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, raw: bytes) -> None:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.server.log_request_entry(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        path = self.path.split("?", 1)[0]
        if not self._authorized():
            self._json(401, _error("authentication_error", "invalid x-api-key"))
        elif path == "/v1/messages" and isinstance(body, dict):
            message = message_for(body, scripted_reply(body))
            if body.get("stream"):
                self._stream(message)
            else:
                self._json(200, message)
        elif path == "/v1/messages/count_tokens":
            self._json(200, {"input_tokens": 10})
        else:
            self._json(404, _error("not_found_error", f"no {path} here"))

    def _authorized(self) -> bool:
        key = self.headers.get("x-api-key") or ""
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        return bool({key, bearer} & self.server.accepted)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_stub")
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, message: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for name, data in sse_events(message):
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], accepted: frozenset[str], log_path: str) -> None:
        super().__init__(address, StubHandler)
        self.accepted = accepted
        self.log_path = log_path
        self._lock = threading.Lock()

    def log_request_entry(self, entry: dict[str, Any]) -> None:
        with self._lock, open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--keys-file", required=True, help="the credentials accepted, one a line")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.keys_file, encoding="utf-8") as keys_file:
        accepted = frozenset(line.strip() for line in keys_file if line.strip())
    server = StubServer(("0.0.0.0", args.port), accepted, args.log)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("anthropic stub ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
