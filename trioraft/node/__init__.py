"""The trio runtime: ``NodeBuilder(config).start()`` gives a ``Node``; ``await node.run()``."""

from trioraft.node.builder import NodeBuilder
from trioraft.node.events import LeaderInfo
from trioraft.node.node import Node

__all__ = ["LeaderInfo", "Node", "NodeBuilder"]
