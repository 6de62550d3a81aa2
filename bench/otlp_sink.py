"""A do-nothing OTLP/HTTP receiver for benchmarks: accepts trace exports and counts them.

    python bench/otlp_sink.py --port 4318   # --port 0: any free port, printed on stdout

POST (any path, e.g. /v1/traces) → 200, body read and dropped; GET /count → "<exports> <bytes>";
GET /readyz → 200. It runs on the load core, so the gateway pays for exporting but not for a collector.
"""

from __future__ import annotations

import argparse
import http.server
import threading


def serve(port: int) -> None:
    lock = threading.Lock()
    seen = {"exports": 0, "bytes": 0}

    class Sink(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP exporter's session expects

        def do_POST(self) -> None:
            size = len(self.rfile.read(int(self.headers.get("content-length", 0))))
            with lock:
                seen["exports"] += 1
                seen["bytes"] += size
            self._reply(b"")

        def do_GET(self) -> None:
            with lock:
                text = f"{seen['exports']} {seen['bytes']}" if self.path == "/count" else "ok"
            self._reply(text.encode())

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
    print(server.server_address[1], flush=True)  # the port, for callers that passed 0
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0: pick a free port and print it")
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
