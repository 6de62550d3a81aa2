"""One Redis round trip, as the gateway pays it: PING from the server core to redis-server on the load
core at the open loop's rate (so both sides sleep between calls, as at 200 req/s), timed from the
send to the reply. Prints `{"p50_ms": …, "p99_ms": …, "samples": …}`.

    taskset -c 0 python bench/redis_rtt.py --port 6379 --rate 200 --duration 5

The full pipeline's exact limits make one such trip before the upstream call; the report sets it
beside the hop in C (nginx as a reverse proxy) and in bare Python, to say where the added latency comes from.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

from bench_measure import percentile  # (this script's directory is on sys.path)


def round_trips(port: int, rate: float, duration_s: float) -> list[float]:
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times: list[float] = []
        start = time.perf_counter()
        for i in range(int(rate * duration_s)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
            times.append(time.perf_counter() - sent)
            if not reply.startswith(b"+PONG"):
                raise SystemExit(f"unexpected reply from redis-server: {reply!r}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    ms = [t * 1000 for t in round_trips(args.port, args.rate, args.duration)]
    print(json.dumps({"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "samples": len(ms)}))


if __name__ == "__main__":
    main()
