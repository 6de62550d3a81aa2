"""Hot reload of policy files while a real gateway serves traffic."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import openai
import yaml

from fakes import async_wait_until, wait_until
from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
ADMIN_KEY, ADMIN_HASH = make_key("admin")
MESSAGES = [{"role": "user", "content": "hello"}]


def config(upstreams, **server) -> dict:
    return {
        "server": {"policy_watch_s": 0.1, **server},
        "targets": {u.name: {"adapter": "openai", "base_url": u.base_url, "model": "m"} for u in upstreams},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["chat"]}},
        "admin_keys": [ADMIN_HASH],
    }


def policy_to(target: str, **route) -> dict:
    return {"version": 1, "routes": [{"name": f"chat-{target}", "when": {"model": "chat"}, "send": [target], **route}]}


def write_atomically(path: Path, content: dict | str) -> None:
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    temp = path.with_suffix(".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def admin(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)


async def test_reload_under_load_drops_nothing_and_never_applies_an_invalid_file(make_openai_upstream, start_gateway):
    a, b, c = make_openai_upstream("a"), make_openai_upstream("b"), make_openai_upstream("c")
    gateway = start_gateway(config([a, b, c], policy_watch_s=0), policies={"policy.yaml": policy_to("a")})
    policy_file = gateway.config_path.parent / "policy.yaml"
    sdk = openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0)
    served: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set() and len(served) < 5000:
            reply = await sdk.chat.completions.create(model="chat", messages=MESSAGES)
            served.append(reply.choices[0].message.content.split(":")[0])

    workers = [asyncio.create_task(traffic()) for _ in range(8)]
    invalid_versions = [
        "version: 1\nroutes: [\n",  # YAML syntax
        yaml.safe_dump(policy_to("c", retry={"attempts": 0})),  # schema: would route to c if it ever applied
        yaml.safe_dump(policy_to("nowhere")),  # unknown target
    ]
    async with httpx.AsyncClient(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        version = (await http.get("/admin/policy")).json()["version"]
        for round_ in range(12):
            target = "b" if round_ % 2 == 0 else "a"
            write_atomically(policy_file, policy_to(target))
            reply = await http.post("/admin/reload")
            assert reply.status_code == 200 and reply.json()["reloaded"] is True
            version += 1
            bad = invalid_versions[round_ % len(invalid_versions)]
            write_atomically(policy_file, bad)
            rejected = await http.post("/admin/reload")
            assert rejected.status_code == 400
            assert rejected.json()["error"]["code"] == "invalid_policy"
            status = (await http.get("/admin/policy")).json()
            assert status["version"] == version and status["last_error"]
            await async_wait_until(lambda n=len(served): len(served) > n + 5, timeout=10, message="traffic to flow")
    stop.set()
    await asyncio.gather(*workers)  # any failed request raises here
    assert len(served) > 100
    assert set(served) <= {"a", "b"} and {"a", "b"} <= set(served)
    assert c.requests == [], "an invalid policy never took effect"


def test_watched_file_change_and_sighup_apply_without_restart(make_openai_upstream, start_gateway):
    a, b = make_openai_upstream("a"), make_openai_upstream("b")
    gateway = start_gateway(config([a, b]), policies={"policy.yaml": policy_to("a")})
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0)

    def served_by(name: str) -> bool:
        return sdk.chat.completions.create(model="chat", messages=MESSAGES).choices[0].message.content.startswith(name + ":")

    assert served_by("a")
    write_atomically(gateway.config_path.parent / "policy.yaml", policy_to("b"))
    wait_until(lambda: served_by("b"), timeout=10, message="the watcher to load the new policy")
    pid = gateway.pid
    with admin(gateway) as http:
        assert http.get("/admin/policy").json()["routes"] == ["chat-b"]
        # Broken file: the watcher rejects it and the last good policy keeps serving.
        write_atomically(gateway.config_path.parent / "policy.yaml", "version: 1\nroutes: {")
        wait_until(lambda: http.get("/admin/policy").json()["last_error"] is not None, timeout=10, message="rejection")
        assert "invalid YAML" in http.get("/admin/policy").json()["last_error"]
        assert served_by("b")
    # SIGHUP with the watcher off: nothing changes until the signal.
    gateway.stop()
    quiet = start_gateway({**config([a, b]), "server": {"policy_watch_s": 0}}, policies={"policy.yaml": policy_to("a")})
    sdk = openai.OpenAI(base_url=quiet.openai_base_url, api_key=KEY, max_retries=0)
    write_atomically(quiet.config_path.parent / "policy.yaml", policy_to("b"))
    assert served_by("a")
    quiet.send_signal(signal.SIGHUP)
    wait_until(lambda: served_by("b"), timeout=10, message="SIGHUP to reload the policy")
    assert quiet.running and pid != quiet.pid


def test_kubernetes_configmap_symlink_swap_is_picked_up(make_openai_upstream, start_gateway, tmp_path):
    a, b = make_openai_upstream("a"), make_openai_upstream("b")
    # The kubelet's layout: policy.yaml -> ..data/policy.yaml, ..data -> ..2026_v1 (swapped atomically).
    mount = tmp_path / "policies"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "policy.yaml").write_text(yaml.safe_dump(policy_to("a")))
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")
    gateway = start_gateway({**config([a, b]), "policies": [str(mount / "policy.yaml")]})
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0)
    assert sdk.chat.completions.create(model="chat", messages=MESSAGES).choices[0].message.content.startswith("a:")
    (mount / "..v2").mkdir()
    (mount / "..v2" / "policy.yaml").write_text(yaml.safe_dump(policy_to("b")))
    os.symlink("..v2", mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")
    wait_until(
        lambda: sdk.chat.completions.create(model="chat", messages=MESSAGES).choices[0].message.content.startswith("b:"),
        timeout=10,
        message="the swapped ConfigMap to take effect",
    )


def test_admin_endpoints_need_the_admin_key(openai_upstream, start_gateway):
    gateway = start_gateway(config([openai_upstream]), policies={"policy.yaml": policy_to(openai_upstream.name)})
    for headers in ({}, {"Authorization": f"Bearer {KEY}"}):
        with httpx.Client(base_url=gateway.base_url, headers=headers) as http:
            assert http.get("/admin/policy").status_code == 401
            response = http.post("/admin/reload")
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with admin(gateway) as http:
        status = http.get("/admin/policy").json()
        assert status["version"] == 1 and len(status["sha256"]) == 64 and status["last_error"] is None
        assert http.post("/admin/reload").json() == {"reloaded": False, "version": 1, "sha256": status["sha256"]}
