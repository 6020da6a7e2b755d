"""The trio runtime: ``NodeBuilder(config).start()`` gives a ``Node``; ``await node.run()``."""

from trioraft.node.events import LeaderInfo
from trioraft.node.node import Node, NodeBuilder

__all__ = ["LeaderInfo", "Node", "NodeBuilder"]
