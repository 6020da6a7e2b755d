"""The ``trioraft`` command: the daemon (``run``), a local cluster, client and bench commands.

Errors a user can fix (bad config, data dir in use, no leader) print one line on stderr and
exit non-zero: 2 for usage and configuration errors (as for unknown options), 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from trioraft.config import load_config, parse_peers
from wire.errors import ConfigError, TrioraftError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="trioraft: a Raft-replicated key-value store on trio, ZeroMQ, CBOR and RocksDB.",
)

EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        envvar="TRIORAFT_ENDPOINTS",
        help="Client endpoints, comma-separated (default: $TRIORAFT_ENDPOINTS).",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds, retries included.")]


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"trioraft: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    node_id: Annotated[int | None, typer.Option("--id", help="This node's id (>= 1).")] = None,
    peer_addr: Annotated[str | None, typer.Option(help="Address for peer traffic.")] = None,
    client_addr: Annotated[str | None, typer.Option(help="Address for clients.")] = None,
    peers: Annotated[
        str | None, typer.Option(help="Initial voters: 1=tcp://host:port,2=tcp://host:port,...")
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="RocksDB data directory.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML config file; flags override it.")
    ] = None,
    tick_ms: Annotated[int | None, typer.Option(help="Raft tick in milliseconds.")] = None,
    election_ticks: Annotated[int | None, typer.Option(help="Election timeout in ticks.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run one node until SIGINT or SIGTERM. With no options: a single-node cluster on
    127.0.0.1 (clients on port 7379) with its data in ./trioraft-data."""
    from trioraft.node import NodeBuilder

    _setup_logging(log_level)
    try:
        peer_map = parse_peers(peers) if peers else None
        if peer_addr is None and peer_map and node_id in peer_map:
            peer_addr = peer_map[node_id]
        cfg = load_config(
            str(config) if config else None,
            node_id=node_id,
            peer_addr=peer_addr,
            client_addr=client_addr,
            peers=peer_map,
            data_dir=data_dir,
            tick_ms=tick_ms,
            election_ticks=election_ticks,
        )
    except ConfigError as exc:
        fail(str(exc), 2)
        return
    try:
        node = NodeBuilder(cfg).start()
    except TrioraftError as exc:
        fail(str(exc))
        return

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(node.run)
                print(f"trioraft node {cfg.node_id} ready: clients {cfg.client_addr}", flush=True)
                async for signum in signals:
                    logging.getLogger("trioraft").info(
                        "node %d: %s, stopping", cfg.node_id, signal.Signals(signum).name
                    )
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(serve)
    except TrioraftError as exc:
        fail(str(exc))


@app.command()
def local(
    nodes: Annotated[int, typer.Option(help="How many nodes.", min=1, max=9)] = 3,
    base_port: Annotated[
        int, typer.Option(help="Node i uses ports P+2i (clients), P+2i+1.")
    ] = 7379,
    data_dir: Annotated[str, typer.Option(help="One sub-directory per node.")] = "./trioraft-local",
    tick_ms: Annotated[int, typer.Option(help="Raft tick in milliseconds.")] = 100,
) -> None:
    """Start a local cluster of NODES `trioraft run` processes on 127.0.0.1; Ctrl-C stops it."""
    from cli.local import run_local

    try:
        trio.run(run_local, nodes, base_port, os.path.abspath(data_dir), tick_ms)
    except TrioraftError as exc:
        fail(str(exc))


@app.command()
def put(key: str, value: str, endpoints: EndpointsOpt = None, timeout: TimeoutOpt = 10.0) -> None:
    """Store VALUE under KEY; prints OK and the revision."""
    revision = _client_call(endpoints, timeout, lambda c: c.put(key, value))
    typer.echo(f"OK revision {revision}")


@app.command()
def get(
    key: str,
    endpoints: EndpointsOpt = None,
    consistency: Annotated[str, typer.Option(help="linearizable or eventual.")] = "linearizable",
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Print the value of KEY; exits 1 if the key does not exist."""
    value = _client_call(endpoints, timeout, lambda c: c.get(key, consistency=consistency))
    if value is None:
        fail(f"key not found: {key}")
    sys.stdout.buffer.write(value + b"\n")


@app.command()
def delete(key: str, endpoints: EndpointsOpt = None, timeout: TimeoutOpt = 10.0) -> None:
    """Delete KEY; prints 1 if it existed, 0 if not (as etcdctl does)."""
    existed = _client_call(endpoints, timeout, lambda c: c.delete(key))
    typer.echo("1" if existed else "0")


@app.command()
def status(
    endpoints: EndpointsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per node.")] = False,
) -> None:
    """Each node's id, role, term, leader, commit and applied index."""
    results = _client_call(endpoints, 5.0, lambda c: c.cluster_status())
    for endpoint, st in results.items():
        if isinstance(st, TrioraftError):
            row: dict[str, Any] = {"endpoint": endpoint, "error": str(st)}
        else:
            row = {
                "endpoint": endpoint,
                "id": st.node_id,
                "role": st.role.name.lower(),
                "term": st.term,
                "leader": st.leader_id,
                "commit": st.commit,
                "applied": st.applied,
            }
        typer.echo(json.dumps(row) if as_json else "  ".join(f"{k}={v}" for k, v in row.items()))


bench_app = typer.Typer(help="Load generators.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _bench(
    workload: str,
    endpoints: str | None,
    clients: int,
    connections: int | None,
    procs: int,
    ops: int,
    duration: float,
    warmup: float,
    value_size: int,
    key_space: int,
    consistency: str,
    as_json: bool,
) -> None:
    from cli.bench import make_spec, run_bench

    if consistency not in ("linearizable", "lease", "eventual"):
        fail(f"--consistency: expected linearizable, lease or eventual, got {consistency!r}", 2)
    spec = make_spec(
        workload,
        endpoints,
        clients=clients,
        connections=connections or clients,
        ops=0 if duration else ops,
        duration=duration,
        warmup=warmup,
        value_size=value_size,
        key_space=key_space,
        consistency=consistency,
    )
    result = _run(lambda: run_bench(spec, procs, progress=sys.stderr.isatty() and not as_json))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
    else:
        typer.echo(result.line())


ClientsOpt = Annotated[int, typer.Option(help="Concurrent requests in flight.", min=1)]
ConnectionsOpt = Annotated[
    int | None, typer.Option(help="Client connections (default: one per client).", min=1)
]
ProcsOpt = Annotated[int, typer.Option(help="Load processes.", min=1)]
OpsOpt = Annotated[int, typer.Option(help="Total operations (ignored with --duration).", min=1)]
DurationOpt = Annotated[float, typer.Option(help="Seconds to measure instead of --ops.")]
WarmupOpt = Annotated[float, typer.Option(help="Seconds of load before measuring.")]
ValueSizeOpt = Annotated[int, typer.Option(help="Value size in bytes.", min=0)]
KeySpaceOpt = Annotated[int, typer.Option(help="Distinct keys.", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary.")]


@bench_app.command("put")
def bench_put(
    endpoints: EndpointsOpt = None,
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 10000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 10000,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop puts; prints ops/s and p50/p90/p99/p99.9 latency."""
    _bench(
        "put",
        endpoints,
        clients,
        connections,
        procs,
        ops,
        duration,
        warmup,
        value_size,
        key_space,
        "linearizable",
        as_json,
    )


@bench_app.command("get")
def bench_get(
    endpoints: EndpointsOpt = None,
    consistency: Annotated[str, typer.Option(help="linearizable, lease or eventual.")] = (
        "linearizable"
    ),
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 10000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop gets at a consistency level (the key space is written first)."""
    _bench(
        "get",
        endpoints,
        clients,
        connections,
        procs,
        ops,
        duration,
        warmup,
        value_size,
        key_space,
        consistency,
        as_json,
    )


def _client_call(endpoints: str | None, timeout: float, op: Any) -> Any:
    from trioraft.client import open_client

    async def go() -> Any:
        async with open_client(endpoints, timeout=timeout) as client:
            return await op(client)

    return _run(go)


def _run(fn: Any) -> Any:
    try:
        return trio.run(fn)
    except TrioraftError as exc:
        fail(str(exc))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
