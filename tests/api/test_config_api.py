"""Client-API settings: lease reads need a sane clock-drift margin, refused at config time."""

from __future__ import annotations

import pytest

from trioraft import ConfigError, NodeConfig, load_config


def test_lease_is_the_election_timeout_minus_the_drift_margin() -> None:
    cfg = NodeConfig(tick_ms=100, election_ticks=10)
    assert (cfg.election_timeout_ms, cfg.lease_drift, cfg.lease_ms) == (1000, 400, 600)
    assert NodeConfig(lease_drift_ms=300).lease_ms == 700
    assert NodeConfig(lease_reads=False).lease_ms == 0
    # an election timeout of 2 ticks leaves no room for the default margin: no lease
    assert NodeConfig(election_ticks=2).lease_ms == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lease_drift_ms": 100}, "100 ms is too small for lease reads; at least 250 ms"),
        ({"lease_drift_ms": 0}, "too small for lease reads"),
        ({"lease_drift_ms": 1000}, "leaves no lease within the 1000 ms election timeout"),
        ({"default_consistency": "strong"}, "default_consistency: expected linearizable"),
        ({"watch_buffer": 0}, "watch_buffer must be >= 1"),
        ({"max_txn_ops": 0}, "max_txn_ops must be >= 1"),
    ],
)
def test_unsafe_or_invalid_client_settings_are_refused(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, **settings)


def test_a_small_margin_is_fine_with_lease_reads_off() -> None:
    assert load_config(None, lease_drift_ms=1, lease_reads=False).lease_ms == 0
