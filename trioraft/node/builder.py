"""``NodeBuilder``: a :class:`~trioraft.node.node.Node` from a config, its storage opened."""

from __future__ import annotations

import random

from storage import Identity, Store, open_store
from trioraft.config import NodeConfig
from trioraft.node.bootstrap import JoinResult
from trioraft.node.node import Node
from wire.errors import StorageError


class NodeBuilder:
    """Builds a :class:`Node` from a config; tests may swap the store and seed the rng."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._seed: int | None = None
        self._join: JoinResult | None = None

    def with_join(self, join: JoinResult) -> NodeBuilder:
        """This node joins a running cluster: ``join`` is what ``join_cluster`` returned
        (only for a new data dir; a restarted node finds its membership there)."""
        self._join = join
        return self

    def with_store(self, store: Store) -> NodeBuilder:
        self._store = store
        return self

    def with_seed(self, seed: int) -> NodeBuilder:
        self._seed = seed
        return self

    def start(self) -> Node:
        """Open storage and recover; raises ``StorageError`` (dir in use, corrupt, foreign)."""
        cfg = self.config
        cluster_id = self._join.cluster_id if self._join else cfg.cluster_id
        adopt = bool(cfg.join) and self._join is None  # a restarted node that once joined
        store = self._store or open_store(
            cfg.data_dir, Identity(cluster_id, cfg.node_id), adopt_cluster=adopt
        )
        try:
            return Node(cfg, store, random.Random(self._seed), join=self._join)
        except BaseException as exc:
            if self._store is None:
                store.close()
            if isinstance(exc, StorageError) and store.path not in str(exc):
                raise StorageError(f"data dir {store.path}: {exc}") from exc  # from the core
            raise
