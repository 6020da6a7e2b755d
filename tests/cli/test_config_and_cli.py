"""Configuration validation and the CLI's handling of bad input (exit 2, one line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trioraft.config import NodeConfig, load_config, parse_peers
from trioraft.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def trioraft(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_defaults_are_a_single_node_on_localhost() -> None:
    cfg = NodeConfig()
    assert cfg.peers == {1: "tcp://127.0.0.1:7380"}
    assert cfg.client_addr == "tcp://127.0.0.1:7379"
    assert cfg.data_dir == "./trioraft-data"


def test_cluster_id_depends_on_member_ids_and_token_not_addresses() -> None:
    a = NodeConfig(
        node_id=1,
        peers={1: "tcp://127.0.0.1:1", 2: "tcp://127.0.0.1:2"},
        peer_addr="tcp://127.0.0.1:1",
    )
    more = a.with_overrides(
        peers={1: "tcp://127.0.0.1:1", 2: "tcp://127.0.0.1:2", 3: "tcp://127.0.0.1:3"}
    )
    other_token = a.with_overrides(cluster_token="other")
    assert len({a.cluster_id, more.cluster_id, other_token.cluster_id}) == 3
    # another member's view of the same cluster, through another address for node 1
    b = a.with_overrides(
        node_id=2,
        peer_addr="tcp://127.0.0.1:2",
        peers={1: "tcp://127.0.0.1:9", 2: "tcp://127.0.0.1:2"},
    )
    assert a.cluster_id == b.cluster_id


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"node_id": 0}, "node_id must be a positive integer"),
        ({"node_id": 3, "peers": {1: "tcp://127.0.0.1:1"}}, "does not list this node"),
        ({"client_addr": "http://x:1"}, "client_addr: expected tcp://HOST:PORT"),
        ({"client_addr": "tcp://127.0.0.1:99999"}, "bad port"),
        ({"tick_ms": 0}, "tick_ms must be >= 1"),
        ({"election_ticks": 1, "heartbeat_ticks": 1}, "must exceed heartbeat_ticks"),
        ({"peers": {1: "tcp://127.0.0.1:1", 2: "tcp://127.0.0.1:1"}}, "share one address"),
        ({"tick_ms": "fast"}, "tick_ms: expected int"),
    ],
)
def test_invalid_settings_raise_config_error(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, **settings)


def test_parse_peers() -> None:
    assert parse_peers("1=tcp://a:1, 2=tcp://b:2") == {1: "tcp://a:1", 2: "tcp://b:2"}
    with pytest.raises(ConfigError, match="expected ID=tcp"):
        parse_peers("tcp://a:1")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_peers("1=tcp://a:1,1=tcp://a:2")


def test_toml_file_and_flag_override(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'node_id = 2\ntick_ms = 50\n[peers]\n1 = "tcp://127.0.0.1:7001"\n'
        '2 = "tcp://127.0.0.1:7002"\n'
    )
    cfg = load_config(str(path), peer_addr="tcp://127.0.0.1:7002", tick_ms=20)
    assert (cfg.node_id, cfg.tick_ms, len(cfg.peers)) == (2, 20, 2)
    path.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'no_such_setting'"):
        load_config(str(path))
    path.write_text("node_id = \n")
    with pytest.raises(ConfigError, match=r"node\.toml"):
        load_config(str(path))


def test_cli_unknown_option_exits_2() -> None:
    result = trioraft("run", "--no-such-flag")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_cli_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    result = trioraft("run", "--id", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trioraft: node_id must be a positive integer, got 0"
    ]
    result = trioraft("run", "--peers", "1=tcp://127.0.0.1:1,oops", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--peers: expected ID=tcp://HOST:PORT, got 'oops'" in result.stderr


def test_cli_without_endpoints_says_so() -> None:
    result = trioraft("get", "k")
    assert result.returncode == 1
    assert "no endpoints given" in result.stderr
