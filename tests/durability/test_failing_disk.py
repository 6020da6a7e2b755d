"""A failing disk: the node stops acknowledging, steps down, logs one error, keeps serving
eventual reads, and recovers when writes succeed again; it never acknowledges what it could
not persist.

Faults are injected at the storage boundary (``storage.FaultyStore``) under real ``Node``
objects in one process (real ZeroMQ on 127.0.0.1); the sync-point checker of
``test_sync_points`` runs over the whole history. As root, one more test fills a real
tmpfs under a RocksDB store; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
import trio

from storage import FaultyStore, MemoryStore, open_store
from tests.durability.durability_helpers import (
    EventLog,
    Mark,
    RecordingStore,
    Sent,
    check_acks_follow_syncs,
    configs,
    identity,
    in_process_cluster,
    memory_store,
    record_sends,
    wait_applied,
    write_many,
)
from trioraft import open_client
from trioraft.errors import TrioraftError
from trioraft.kv.state_machine import KVStateMachine
from wire.messages import AppendEntriesResponse, RequestVoteResponse

NODE_LOGGER = "trioraft.node.node"


def storage_logs(caplog: pytest.LogCaptureFixture, node_id: int) -> tuple[list[str], list[str]]:
    """(errors, recoveries) this node logged about its storage."""
    mine = [r for r in caplog.records if r.name == NODE_LOGGER]
    mine = [r for r in mine if r.getMessage().startswith(f"node {node_id}: ")]
    errors = [r.getMessage() for r in mine if r.levelno == logging.ERROR]
    back = [r.getMessage() for r in mine if "back in service" in r.getMessage()]
    return errors, back


async def role(client, endpoint: str) -> str:
    return (await client.status(endpoint, timeout=5)).role.name


async def wait_role(client, endpoint: str, wanted: set[str]) -> None:
    while True:
        try:
            if await role(client, endpoint) in wanted:
                return
        except TrioraftError:
            pass
        await trio.sleep(0.02)


def acks_between(log: EventLog, node: int, start: str, end: str) -> list[object]:
    """Acknowledgements ``node`` sent between two marks."""
    inside, found = False, []
    for e in log.events:
        if isinstance(e, Mark):
            inside = {start: True, end: False}.get(e.text, inside)
        elif inside and isinstance(e, Sent) and e.node == node:
            msg = e.msg
            if isinstance(msg, AppendEntriesResponse | RequestVoteResponse):
                found.append(msg)
    return found


async def test_leader_disk_fails_then_recovers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=NODE_LOGGER)
    log = EventLog()
    record_sends(monkeypatch, log)
    faulty: dict[int, FaultyStore] = {}

    def make(cfg) -> RecordingStore:
        faulty[cfg.node_id] = FaultyStore(memory_store(cfg))
        return RecordingStore(faulty[cfg.node_id], log, cfg.node_id)

    cfgs = configs(3)
    with trio.fail_after(90):  # safety net only
        async with in_process_cluster(cfgs, make) as cluster:
            async with open_client(cluster.endpoints, timeout=30) as client:
                leader, _ = await client.wait_leader()
                endpoint = cluster.cfgs[leader].client_addr
                top = await write_many(client, "before", 30)
                await wait_applied(client, [endpoint], top)

                log.add(Mark("fail"))
                faulty[leader].fail("append", "sync", "apply", reason="No space left on device")
                top = await write_many(client, "during", 30)  # the others carry on
                new_leader, _ = await client.wait_leader()
                assert new_leader != leader
                await wait_role(client, endpoint, {"FOLLOWER"})
                # eventual reads are served from what it had applied
                got = await client.get("before/7", consistency="eventual", endpoint=endpoint)
                assert got == b"v7"
                assert (await client.status(endpoint)).applied < top
                assert faulty[leader].injected  # the fault was hit, not dodged
                log.add(Mark("heal"))

                faulty[leader].heal()
                await wait_applied(client, [endpoint], top)
                got = await client.get("during/29", consistency="eventual", endpoint=endpoint)
                assert got == b"v29"
                top = await write_many(client, "after", 10)
                await wait_applied(client, cluster.endpoints, top)

    errors, back = storage_logs(caplog, leader)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"node {leader}: storage failed, acknowledging nothing")
    assert "injected fault: No space left on device" in errors[0]
    assert len(back) == 1, back
    assert acks_between(log, leader, "fail", "heal") == []
    result = check_acks_follow_syncs(log.events)
    assert not result.violations, "\n".join(result.violations[:10])


async def test_follower_survives_a_transient_sync_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=NODE_LOGGER)
    log = EventLog()
    record_sends(monkeypatch, log)
    faulty: dict[int, FaultyStore] = {}

    def make(cfg) -> RecordingStore:
        faulty[cfg.node_id] = FaultyStore(memory_store(cfg))
        return RecordingStore(faulty[cfg.node_id], log, cfg.node_id)

    cfgs = configs(3)
    with trio.fail_after(90):
        async with in_process_cluster(cfgs, make) as cluster:
            async with open_client(cluster.endpoints, timeout=30) as client:
                leader, _ = await client.wait_leader()
                follower = next(i for i in cluster.cfgs if i != leader)
                faulty[follower].fail("sync", times=3, reason="Input/output error")
                top = await write_many(client, "k", 40)
                await wait_applied(client, cluster.endpoints, top)
    assert faulty[follower].injected["sync"] == 3
    errors, back = storage_logs(caplog, follower)
    assert len(errors) == 1 and "sync failed: injected fault" in errors[0], errors
    assert len(back) == 1
    result = check_acks_follow_syncs(log.events)
    assert not result.violations, "\n".join(result.violations[:10])


async def test_single_node_acknowledges_nothing_it_cannot_persist() -> None:
    cfgs = configs(1)
    stores: dict[int, FaultyStore] = {}

    def make(cfg) -> FaultyStore:
        stores[cfg.node_id] = FaultyStore(memory_store(cfg))
        return stores[cfg.node_id]

    with trio.fail_after(60):
        async with in_process_cluster(cfgs, make) as cluster:
            async with open_client(cluster.endpoints, timeout=30) as client:
                await client.put("a", "1")
                store = stores[1]
                inner = store.inner
                assert isinstance(inner, MemoryStore)
                written = inner.last_index
                store.fail("append", "sync", "apply")
                with pytest.raises(TrioraftError):
                    await client.put("b", "2", timeout=1)
                assert store.injected["append"] == 1
                assert inner.last_index == written  # the write reached no disk, no ack left
                assert await client.get("a", consistency="eventual") == b"1"
                assert await role(client, cluster.endpoints[0]) == "FOLLOWER"
                store.heal()
                await client.put("c", "3")
                assert await client.get("c") == b"3"


# --- a real full disk (root only) ---------------------------------------------------------


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs at ``path``; None if done, else why not."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.strip()}"


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the file system of ``path`` to the last byte."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


async def test_tmpfs_fills_up_then_frees(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mnt = tmp_path / "mnt"
    why = mount_tmpfs(mnt, "16m")
    if why:
        pytest.skip(why)
    caplog.set_level(logging.INFO)
    try:
        cfgs = configs(3)
        victim = 3
        data = mnt / "node3"

        def make(cfg):
            if cfg.node_id == victim:
                return open_store(str(data), identity(cfg))
            return memory_store(cfg)

        with trio.fail_after(90):
            async with in_process_cluster(cfgs, make) as cluster:
                endpoint = cluster.cfgs[victim].client_addr
                async with open_client(cluster.endpoints, timeout=30) as client:
                    top = await write_many(client, "before", 30)
                    await wait_applied(client, cluster.endpoints, top)
                    filler = fill(mnt)
                    top = await write_many(client, "during", 60)
                    while not storage_logs(caplog, victim)[0]:
                        await write_many(client, "more", 10)
                    await wait_role(client, endpoint, {"FOLLOWER"})
                    got = await client.get("before/3", consistency="eventual", endpoint=endpoint)
                    assert got == b"v3"
                    filler.unlink()
                    top = await write_many(client, "after", 10)
                    await wait_applied(client, cluster.endpoints, top)
                    got = await client.get("during/59", consistency="eventual", endpoint=endpoint)
                    assert got == b"v59"
        errors, back = storage_logs(caplog, victim)
        assert len(errors) == 1 and "No space left on device" in errors[0], errors
        assert len(back) == 1, back
        assert any("reopened after a failed write" in r.getMessage() for r in caplog.records)
        with open_store(str(data), identity(cfgs[victim - 1])) as store:
            sm = KVStateMachine(store)
            for prefix, n in (("before", 30), ("during", 60), ("after", 10)):
                for i in range(n):
                    assert sm.get(f"{prefix}/{i}".encode()) == f"v{i}".encode()
    finally:
        unmount(mnt)


def test_memory_store_has_nothing_to_recover() -> None:
    store = MemoryStore(identity(configs(1)[0]))
    store.recover()
