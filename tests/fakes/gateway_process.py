"""The real gateway as a child process (`python -m gateway serve`), configured from files a test writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .network import free_port
from .polling import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# No proxy for loopback, in this process's probes and in the gateway's own upstream calls: a proxy set in a
# developer's environment must not swallow requests meant for the fakes on 127.0.0.1.
_NO_PROXY = "127.0.0.1,localhost,::1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write_yaml_file(path: Path, content: Mapping[str, Any] | str) -> Path:
    """Writes `content` (a mapping, dumped as YAML, or YAML text as is) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else yaml.safe_dump(dict(content), sort_keys=False)
    path.write_text(text)
    return path


class GatewayProcess:
    """One gateway process on 127.0.0.1:`port`, with its config directory and log file.

    Logs (stdout and stderr) accumulate in `log_path` across restarts; `log_text()` reads them, e.g. to show why
    the gateway failed or to assert that it never printed a traceback.
    """

    def __init__(
        self,
        workdir: Path,
        config_path: Path,
        port: int,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.config_path = config_path
        self.port = port
        self.log_path = workdir / "gateway.log"
        self.extra_env = dict(env or {})
        self.extra_args = list(args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(self.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, wait_ready: bool = True, timeout: float = 20.0) -> None:
        """Starts the process (again, after a stop) and by default waits until /readyz answers 200."""
        if self.running:
            raise RuntimeError("gateway is already running")
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": _NO_PROXY, "no_proxy": _NO_PROXY}
        env.update(self.extra_env)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        if wait_ready:
            self.wait_until_ready(timeout)

    def wait_until_ready(self, timeout: float = 20.0) -> None:
        """Polls GET /readyz until 200; fails with the log if the process exits or the deadline passes."""

        def ready_or_died() -> bool:
            if not self.running:
                raise AssertionError(f"gateway exited with {self.returncode} before it was ready:\n{self.log_text()}")
            return self.probe("/readyz") == 200

        try:
            wait_until(ready_or_died, timeout=timeout, interval=0.05)
        except AssertionError as failure:
            if self.running:
                raise AssertionError(f"gateway not ready within {timeout}s:\n{self.log_text()}") from failure
            raise

    def probe(self, path: str) -> int | None:
        """Status of GET `path`, or None when nothing answers (yet)."""
        status, _, _ = self.http_get(path, timeout=1.0)
        return status

    def http_get(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
    ) -> tuple[int | None, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of GET `path`; status None when the connection fails."""
        request = urllib.request.Request(self.base_url + path, headers=dict(headers or {}))
        try:
            with _DIRECT.open(request, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, {}, b""

    def write_file(self, name: str, content: Mapping[str, Any] | str) -> Path:
        """Writes a file (e.g. a policy, for hot-reload tests) next to the config; returns its path."""
        return write_yaml_file(self.workdir / name, content)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        self._require_process().send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the process to exit and returns its exit code (subprocess.TimeoutExpired past `timeout`)."""
        return self._require_process().wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code. Idempotent."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=timeout)
        return self._process.returncode

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("gateway has not been started")
        return self._process


@contextmanager
def echo_gateway(workdir: Path, key_hash: str) -> Iterator[GatewayProcess]:
    """One gateway serving the built-in echo target to one tenant, shared by a module's hostile-input tests;
    whatever they sent, its log must hold no traceback when it stops."""
    config = {"targets": {"echo": {"adapter": "echo"}}, "tenants": {"acme": {"keys": [key_hash], "models": ["echo"]}}}
    process = GatewayProcess(workdir, write_yaml_file(workdir / "config.yaml", config), free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()
    log = process.log_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
