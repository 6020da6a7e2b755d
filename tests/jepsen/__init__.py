"""A Jepsen-style fault suite: real processes, real sockets, real disks, real faults.

See docs/testing.md. Modules: ``history`` (records, JSONL), ``proxy`` (fault-injecting peer
proxies), ``nemesis`` (fault schedules), ``snapshots`` and ``membership`` (the nemeses of
those names), ``workloads`` (register, set, watch), ``linearizability`` (the checker),
``checkers`` (set, watch, logs), ``convergence`` (after healing), ``offline`` (the stopped
nodes' data dirs), ``runner`` (one run), ``run`` (the command line).
"""
