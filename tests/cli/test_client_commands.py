"""The client commands of the ``trioraft`` CLI against a real one-node ``trioraft run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import process_cluster

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def cli(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "TRIORAFT_ENDPOINTS": endpoint},
        check=False,
    )


def test_get_put_delete_cas_txn_scan_watch(tmp_path: Path) -> None:
    with process_cluster(tmp_path, size=1) as cluster:
        ep = cluster.endpoints[0]
        # from revision 1: whenever it connects, it sees everything from the start
        watch = ["watch", "app/", "--prefix", "--rev", "1", "--count", "3", "--json"]
        watcher = subprocess.Popen(
            [sys.executable, "-m", "cli", *watch],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "TRIORAFT_ENDPOINTS": ep},
        )
        try:
            put = cli(ep, "put", "app/a", "1", "--json")
            assert put.returncode == 0, put.stderr
            rev = json.loads(put.stdout)["revision"]
            assert cli(ep, "get", "app/a", "--consistency", "lease").stdout == "1\n"
            got = json.loads(cli(ep, "get", "app/a", "--json").stdout)
            assert (got["value"], got["mod_revision"], got["version"]) == ("1", rev, 1)
            missing = cli(ep, "get", "nope", "--consistency", "eventual")
            assert missing.returncode == 1 and "key not found: nope" in missing.stderr
            bad = cli(ep, "get", "k", "--consistency", "strong")
            assert bad.returncode == 2 and "--consistency" in bad.stderr

            ok = cli(ep, "cas", "app/a", "2", "--expect", "1")
            assert ok.returncode == 0 and ok.stdout.startswith("OK revision")
            failed = cli(ep, "cas", "app/a", "3", "--missing")
            assert failed.returncode == 1 and failed.stdout.strip().endswith("current 2")
            assert cli(ep, "cas", "k", "v").returncode == 2  # neither --expect nor --missing

            txn = cli(
                ep, "txn", "--if", "value(app/a) = 2", "--if", "missing(app/b)",
                "--then", "put app/b two words", "--then", "get app/a", "--else", "get app/b",
            )  # fmt: skip
            assert txn.returncode == 0, txn.stderr
            assert txn.stdout.splitlines()[0].startswith("SUCCEEDED revision")
            assert txn.stdout.splitlines()[1:] == ["put app/b: created", "get app/a: 2"]
            again = json.loads(
                cli(ep, "txn", "--if", "missing(app/b)", "--else", "get app/b", "--json").stdout
            )
            assert not again["succeeded"]
            assert again["results"] == [{"op": "get", "key": "app/b", "value": "two words"}]
            assert cli(ep, "txn", "--if", "value(x) ~ y").returncode == 2

            page = json.loads(cli(ep, "scan", "app/", "--limit", "1", "--json").stdout)
            assert [e["key"] for e in page["entries"]] == ["app/a"]
            rest = cli(ep, "scan", "app/", "--continuation", page["continuation"])
            assert rest.stdout == "app/b two words\n"
            assert cli(ep, "delete", "app/a").stdout == "1\n"

            out, err = watcher.communicate(timeout=60)
            assert watcher.returncode == 0, err
            events = [json.loads(line) for line in out.splitlines()]
            assert [(e["type"], e["key"]) for e in events] == [
                ("PUT", "app/a"),
                ("PUT", "app/a"),
                ("PUT", "app/b"),
            ]
            assert events[0]["revision"] == rev
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
