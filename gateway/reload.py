"""Hot reload of policy files: watched by polling, also on SIGHUP and POST /admin/reload.

Polling `stat()` follows symlinks, so it also sees a Kubernetes ConfigMap update (the kubelet
swaps a `..data` symlink to a new directory), which file-event watchers often miss.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from gateway.config import ConfigError
from gateway.runtime import Runtime

log = logging.getLogger("switchyard.policy")

Signature = tuple[tuple[str, int, int, int] | None, ...]


def file_signature(paths: list[Path]) -> Signature:
    entries = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            entries.append(None)
            continue
        entries.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(entries)


class PolicyReloader:
    """Serialises reloads from every trigger; parsing runs in a thread, the swap on the loop."""

    def __init__(self, runtime: Runtime, env: Mapping[str, str], interval_s: float) -> None:
        self._runtime = runtime
        self._env = env
        self._interval_s = interval_s
        self._lock = asyncio.Lock()
        self._signature = file_signature(runtime.settings.policy_paths())

    async def reload(self) -> bool:
        """Raises ConfigError when the files are invalid; the running policy stays."""
        async with self._lock:
            self._signature = file_signature(self._runtime.settings.policy_paths())
            loaded = await asyncio.to_thread(self._runtime.read_policies, self._env)
            return self._runtime.apply_policies(loaded)

    def reload_soon(self) -> None:
        asyncio.get_running_loop().create_task(self._quiet_reload())

    async def _quiet_reload(self) -> None:
        try:
            await self.reload()
        except ConfigError:
            pass  # already logged with the reasons; the last good policy keeps serving

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if file_signature(self._runtime.settings.policy_paths()) != self._signature:
                await self._quiet_reload()
