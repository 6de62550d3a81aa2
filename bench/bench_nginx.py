"""The mock upstream: nginx answering a fixed OpenAI chat.completion from memory; and nginx as a
reverse proxy in front of it, the floor of what any hop costs on the machine.

nginx (`return 200 '...'`, one worker) serves tens of thousands of req/s on a
shared core, so it is never what limits the passthrough or the gateway; the
harness measures it directly first to show that. Its config, pid, logs and temp
paths all live in a private directory, so it needs no system nginx setup.
"""

from __future__ import annotations

import os
from pathlib import Path

# A realistic non-stream reply (~450 bytes, with usage). Must not contain ' or $ (nginx string syntax).
CHAT_COMPLETION = (
    '{"id":"chatcmpl-bench0000000000000000000000001","object":"chat.completion",'
    '"created":1700000000,"model":"bench-model","choices":[{"index":0,"message":'
    '{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},'
    '"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,'
    '"completion_tokens":9,"total_tokens":28,"prompt_tokens_details":{"cached_tokens":0},'
    '"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_bench"}'
)


ANSWER = f"""default_type application/json;
            return 200 '{CHAT_COMPLETION}';"""


def write_config(root: Path, port: int, chat: str = ANSWER, upstream: str = "") -> Path:
    """Write a self-contained nginx.conf under root (the nginx -p prefix) and return its path.
    `chat`: what /v1/chat/completions does (by default, answer from memory); `upstream`: extra http-level
    config it may need."""
    assert "'" not in CHAT_COMPLETION and "$" not in CHAT_COMPLETION
    root.mkdir(parents=True, exist_ok=True)
    # Workers drop to `nobody` when the master runs as root; let them reach the prefix.
    os.chmod(root, 0o755)
    temp = {name: root / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf = f"""
daemon off;
master_process on;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    # Keep load-generator and pool connections open for the whole run.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    tcp_nodelay on;
    {upstream}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            {chat}
        }}
        location = /readyz {{
            default_type text/plain;
            return 200 'ok';
        }}
    }}
}}
"""
    path = root / "nginx.conf"
    path.write_text(conf)
    return path


def write_proxy_config(root: Path, port: int, upstream_port: int) -> Path:
    """nginx as a reverse proxy to the mock upstream on `upstream_port`, with a keep-alive pool like the
    gateway's: a hop with no work in it, written in C. Pinned like the gateway, it shows what the hop
    itself (loopback and cross-core wake-ups included) adds to latency on this machine."""
    pool = f"upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}"
    chat = 'proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection "";'
    return write_config(root, port, chat, pool)


def command(nginx: str, root: Path, conf: Path) -> list[str]:
    # -e: early startup errors go to our log too, not /var/log/nginx (may not be writable).
    return [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
