"""Process plumbing for the benchmark: tools, ports, pinned children, readiness, RSS.

Every child runs in its own session (process group) so one killpg stops it and
anything it forked; `Processes` is a context manager that stops all of them on
exit, including on errors and Ctrl-C. Every wait here is bounded in time.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


class HarnessError(RuntimeError):
    """Something in the harness or its environment is broken (not a performance result)."""


class StartError(HarnessError):
    """A server under test did not become ready; carries its log tail."""


APT_PACKAGES = ("wrk", "nginx-light")


def find_tool(name: str) -> str | None:
    # nginx lives in /usr/sbin, which is not on PATH for every user/shell.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def ensure_tools() -> dict[str, str]:
    """Return paths of wrk, nginx and taskset; install the Debian packages when missing and root."""
    missing = [t for t in ("wrk", "nginx") if find_tool(t) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise HarnessError(
                f"missing {', '.join(missing)}; install them with: "
                f"sudo apt-get update && sudo apt-get install -y {' '.join(APT_PACKAGES)}"
            )
        print(f"[bench] {', '.join(missing)} not found; installing Debian packages "
              f"{' '.join(APT_PACKAGES)} with apt-get (needs the Debian mirror)...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *APT_PACKAGES]):
            try:
                subprocess.run(argv, env=env, check=True, timeout=900)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise HarnessError(f"'{' '.join(argv)}' failed ({exc}); install {' '.join(APT_PACKAGES)} "
                                   "by hand and rerun") from exc
    tools = {t: find_tool(t) for t in ("wrk", "nginx", "taskset")}
    absent = [t for t, p in tools.items() if p is None]
    if absent:
        raise HarnessError(f"still missing after install: {', '.join(absent)} (taskset is in util-linux)")
    return {t: str(p) for t, p in tools.items()}


def pick_cores() -> tuple[int, int]:
    """(server core, load core): the gateway gets the first allowed core, wrk/nginx the second."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        print(f"[bench] WARNING: only core(s) {allowed} available; server and load share a core, "
              "numbers will be pessimistic", flush=True)
        return allowed[0], allowed[0]
    return allowed[0], allowed[1]


def free_port() -> int:
    # Bind-to-0 then close: tiny race with other programs, acceptable on a bench box.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float  # perf_counter() just before the spawn: the start of "start to ready"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Processes:
    """Owns every child the harness starts; stops them all (reverse order) on exit."""

    workdir: Path
    children: list[Managed] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Managed:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            started = time.perf_counter()
            popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        child = Managed(name, popen, log_path, started)
        self.children.append(child)
        return child

    def stop(self, child: Managed, grace_s: float = 5.0) -> None:
        """SIGTERM the child's group, SIGKILL after grace_s. The child leaves `children` only once
        it is gone, so a Ctrl-C during this wait still lets __exit__ finish the job."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            if child.popen.poll() is not None:
                break
            try:
                os.killpg(child.pid, sig)  # the group id equals the pid (start_new_session)
            except ProcessLookupError:
                break
            try:
                child.popen.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        if child in self.children:
            self.children.remove(child)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        for child in reversed(list(self.children)):
            self.stop(child, grace_s=3.0)


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    """(status, response headers with lower-case names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def http_status(port: int, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    status, _, data = http_request(port, method, path, body, headers, timeout)
    return status, data


def wait_ready(child: Managed, port: int, path: str = "/readyz", timeout_s: float = 30.0,
               poll_s: float = 0.005) -> float:
    """Poll GET path every poll_s until 200; return seconds since spawn. Bounded by timeout_s."""
    deadline = child.spawned_at + timeout_s
    while True:
        try:
            status, _ = http_status(port, "GET", path, timeout=1.0)
            if status == 200:
                return time.perf_counter() - child.spawned_at
        except (OSError, http.client.HTTPException):
            pass  # not listening yet, or closed mid-start: keep polling
        if child.popen.poll() is not None:
            raise StartError(f"{child.name} exited with code {child.popen.returncode} before ready\n"
                             f"--- {child.log_path} (tail) ---\n{child.log_tail()}")
        if time.perf_counter() > deadline:
            raise StartError(f"{child.name} not ready on :{port}{path} after {timeout_s:.0f} s\n"
                             f"--- {child.log_path} (tail) ---\n{child.log_tail()}")
        time.sleep(poll_s)


def _children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def rss_mb(pid: int) -> float:
    """VmRSS of pid plus all its descendants (so --workers or helper processes count), in MiB."""
    total_kb, todo, seen = 0, [pid], set()
    while todo and len(seen) < 256:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
        todo.extend(_children_of(current))
    return total_kb / 1024


@contextmanager
def realtime_client(priority: int = 10) -> Iterator[bool]:
    """Run the calling thread (and threads it starts, which inherit the policy) at SCHED_FIFO.

    A latency client must not add latency of its own: on a shared VM, ordinary (CFS) wake-ups of a
    sleeping client come several ms late at p99 whenever anything else runs on its core, which would
    swamp sub-millisecond differences. Yields whether it worked (needs root or CAP_SYS_NICE); the client
    sleeps between requests, so it never starves the core.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
