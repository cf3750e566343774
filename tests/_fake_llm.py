"""A fake OpenAI-compatible LLM judge server on 127.0.0.1, shared by the judge and fault tests."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """An OpenAI-compatible chat/completions endpoint on 127.0.0.1; `behave(n, user_message)`
    returns (status, content, delay_s, headers) for the n-th request. With `drip` > 0 the headers go
    out at once and the body one byte every `drip` seconds (every read is quick, the reply is slow)."""

    def __init__(self, behave, drip: float = 0.0):
        self.behave, self.calls, self.lock = behave, [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.calls)
                    server.calls.append({"body": body, "auth": self.headers.get("Authorization")})
                status, content, delay, headers = server.behave(n, body["messages"][-1]["content"])
                time.sleep(delay)
                payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                               "content": content}}]}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    for chunk in ([bytes([b]) for b in payload] if drip > 0 else [payload]):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
