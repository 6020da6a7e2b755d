"""CoreConfig validation and the value types' shape."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from trioraft.core import CoreConfig, Ready, SoftState
from wire.errors import ConfigError
from wire.value import is_value


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"node_id": 0}, "node_id"),
        ({"voters": ()}, "voters"),
        ({"voters": (1, 0)}, "voter ids"),
        ({"voters": (1, 2, 2)}, "distinct"),
        ({"heartbeat_ticks": 0}, "heartbeat_ticks"),
        ({"election_ticks": 3, "heartbeat_ticks": 3}, "election_ticks"),
        ({"max_append_bytes": 0}, "max_append_bytes"),
        ({"max_inflight": 0}, "max_inflight"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_setting(
    kwargs: dict[str, Any], words: str
) -> None:
    args: dict[str, Any] = {"node_id": 1, "voters": (1, 2, 3), **kwargs}
    with pytest.raises(ConfigError, match=words):
        CoreConfig(**args)


def test_valid_config_and_defaults() -> None:
    cfg = CoreConfig(node_id=2, voters=(1, 2, 3))
    assert (cfg.election_ticks, cfg.heartbeat_ticks, cfg.pre_vote, cfg.check_quorum) == (
        10,
        1,
        True,
        True,
    )
    # A non-voter (e.g. a future learner) may be configured.
    assert CoreConfig(node_id=4, voters=(1, 2, 3)).node_id == 4


def test_value_types_are_frozen() -> None:
    cfg = CoreConfig(node_id=1, voters=(1,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node_id = 2  # type: ignore[misc]
    # built on every Ready: immutable to the type checker (wire.value), not at run time
    assert is_value(SoftState) and is_value(Ready)
    assert "read_states" in {f.name for f in dataclasses.fields(Ready)}
