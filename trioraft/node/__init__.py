"""The trio runtime: ``NodeBuilder(config).start()`` gives a ``Node``; ``await node.run()``."""

from trioraft.node.node import LeaderInfo, Node, NodeBuilder

__all__ = ["LeaderInfo", "Node", "NodeBuilder"]
