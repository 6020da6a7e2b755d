"""The ``trioraft`` command: the daemon (``run``), a local cluster, client and bench commands.

Errors a user can fix (bad config, data dir in use, no leader) print one line on stderr and
exit non-zero: 2 for usage and configuration errors (as for unknown options), 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from cli.bench_cli import bench_app
from cli.member import leader_app, member_app
from cli.snapshot import snapshot_app
from trioraft.config import load_config, parse_peers
from trioraft.gc_policy import tune_gc
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
    join: Annotated[
        str | None,
        typer.Option(help="Join the running cluster at these client endpoints (comma-separated)."),
    ] = None,
    learner: Annotated[
        bool, typer.Option(help="With --join: stay a learner (default: promoted once caught up).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run one node until SIGINT or SIGTERM. With no options: a single-node cluster on
    127.0.0.1 (clients on port 7379) with its data in ./trioraft-data. With --join: a new
    member of a running cluster (a learner first; see docs/membership.md)."""
    from trioraft.node import NodeBuilder
    from trioraft.node.bootstrap import holds_data, join_cluster

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
            join=join,
            join_as_voter=(not learner) if join else None,
        )
    except ConfigError as exc:
        fail(str(exc), 2)
        return
    try:
        builder = NodeBuilder(cfg)
        if cfg.join and not holds_data(cfg):  # a restart finds its cluster in its data dir
            builder.with_join(trio.run(join_cluster, cfg))
        node = builder.start()
    except TrioraftError as exc:
        fail(str(exc))
        return
    tune_gc()  # after start-up: the loaded log is frozen with the modules (gc_policy.py)

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
    except* TrioraftError as group:  # e.g. the node found damaged data while serving
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        fail(str(error))


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


ConsistencyOpt = Annotated[
    str | None,
    typer.Option(help="linearizable, lease or eventual (default: the server's default)."),
]
JsonOutOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line).")]


@app.command()
def put(
    key: str,
    value: str,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """Store VALUE under KEY; prints OK and the revision."""
    revision = _client_call(endpoints, timeout, lambda c: c.put(key, value))
    typer.echo(json.dumps({"revision": revision}) if as_json else f"OK revision {revision}")


@app.command()
def get(
    key: str,
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """Print the value of KEY; exits 1 if the key does not exist."""
    from cli.kv_format import kv_json

    _check_consistency(consistency)
    result = _client_call(
        endpoints, timeout, lambda c: c.get_with_revision(key, consistency=consistency)
    )
    if as_json:
        row = kv_json(result.kv) if result.kv else {"key": key, "value": None}
        typer.echo(json.dumps({**row, "revision": result.revision}))
        if result.kv is None:
            raise typer.Exit(1)
        return
    if result.value is None:
        fail(f"key not found: {key}")
    sys.stdout.buffer.write(result.value + b"\n")


@app.command()
def delete(
    key: str,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """Delete KEY; prints 1 if it existed, 0 if not (as etcdctl does)."""
    existed = _client_call(endpoints, timeout, lambda c: c.delete(key))
    typer.echo(json.dumps({"deleted": existed}) if as_json else ("1" if existed else "0"))


@app.command()
def cas(
    key: str,
    new: str,
    expect: Annotated[str | None, typer.Option(help="Swap only if the value is this.")] = None,
    missing: Annotated[bool, typer.Option(help="Swap only if KEY does not exist.")] = False,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """Compare-and-swap: set KEY to NEW if its value is --expect (or it is --missing).

    Prints OK and the revision; if the comparison fails, prints FAILED and the current
    value and exits 1. Applied exactly once, even when retried.
    """
    from cli.kv_format import text

    if (expect is None) == (not missing):
        fail("cas: give exactly one of --expect VALUE and --missing", 2)
    result = _client_call(endpoints, timeout, lambda c: c.cas(key, expect, new))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "succeeded": result.succeeded,
                    "revision": result.revision,
                    "current": text(result.current),
                }
            )
        )
    elif result.succeeded:
        typer.echo(f"OK revision {result.revision}")
    else:
        current = "(missing)" if result.current is None else text(result.current)
        typer.echo(f"FAILED revision {result.revision} current {current}")
    if not result.succeeded:
        raise typer.Exit(1)


@app.command()
def txn(
    compares: Annotated[
        list[str] | None,
        typer.Option("--if", help="A condition, e.g. 'value(k) = v', 'missing(k)'."),
    ] = None,
    then_ops: Annotated[
        list[str] | None, typer.Option("--then", help="'put K V', 'delete K' or 'get K'.")
    ] = None,
    else_ops: Annotated[list[str] | None, typer.Option("--else", help="As --then.")] = None,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """An atomic transaction: if every --if holds, run the --then ops, else the --else ops.

    Conditions: value(KEY) = VALUE (also !=, <, >), version|mod|create(KEY) <op> N,
    exists(KEY), missing(KEY). Prints SUCCEEDED or FAILED with the revision, then one line
    per op.
    """
    from cli.kv_format import parse_compare, parse_op, txn_json, txn_lines

    try:
        cs = [parse_compare(x) for x in compares or []]
        ok = [parse_op(x, "--then") for x in then_ops or []]
        ko = [parse_op(x, "--else") for x in else_ops or []]
    except ValueError as exc:
        fail(str(exc), 2)
        return
    result = _client_call(endpoints, timeout, lambda c: c.txn(cs, ok, ko))
    ops = ok if result.succeeded else ko
    if as_json:
        typer.echo(json.dumps(txn_json(result, ops)))
    else:
        typer.echo("\n".join(txn_lines(result, ops)))


@app.command()
def scan(
    prefix: Annotated[str, typer.Argument(help="Key prefix (default: every key).")] = "",
    start: Annotated[str | None, typer.Option(help="First key of the range.")] = None,
    end: Annotated[str | None, typer.Option(help="End of the range (excluded).")] = None,
    limit: Annotated[int, typer.Option(help="Keys per page (0: the server's).", min=0)] = 0,
    continuation: Annotated[
        str | None, typer.Option(help="Token printed by the previous page.")
    ] = None,
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """List keys under PREFIX (and within --start/--end): one 'KEY VALUE' line each.

    With more keys than one page holds, prints the token for --continuation on stderr
    (in the JSON object with --json).
    """
    from cli.kv_format import kv_json, text

    _check_consistency(consistency)
    try:
        token = bytes.fromhex(continuation) if continuation else None
    except ValueError:
        fail(f"--continuation: not a token: {continuation!r}", 2)
        return
    page = _client_call(
        endpoints,
        timeout,
        lambda c: c.scan(
            prefix,
            start=start,
            end=end,
            limit=limit,
            continuation=token,
            consistency=consistency,
        ),
    )
    next_token = page.continuation.hex() if page.continuation else None
    if as_json:
        entries = [kv_json(kv) for kv in page.entries]
        out = {"revision": page.revision, "entries": entries, "continuation": next_token}
        typer.echo(json.dumps(out))
        return
    for kv in page.entries:
        typer.echo(f"{text(kv.key)} {text(kv.value)}")
    if next_token:
        typer.echo(f"trioraft: more keys: --continuation {next_token}", err=True)


@app.command()
def watch(
    key: str,
    prefix: Annotated[bool, typer.Option(help="Watch every key starting with KEY.")] = False,
    rev: Annotated[int, typer.Option(help="Start at this past revision (0: now).", min=0)] = 0,
    prev_kv: Annotated[bool, typer.Option(help="Show each key's previous value.")] = False,
    count: Annotated[int, typer.Option(help="Stop after this many events (0: never).")] = 0,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOutOpt = False,
) -> None:
    """Print PUT and DELETE events of KEY (or of every key under it with --prefix) as they
    happen, until Ctrl-C; resumes by itself across leader changes, without gaps."""
    from cli.kv_format import event_json, event_line

    async def go(client: Any) -> None:
        seen = 0
        async with client.watch(key, prefix=prefix, start_revision=rev, prev_kv=prev_kv) as w:
            async for event in w:
                line = json.dumps(event_json(event)) if as_json else event_line(event)
                print(line, flush=True)
                seen += 1
                if count and seen >= count:
                    return

    try:
        _client_call(endpoints, timeout, go)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _check_consistency(consistency: str | None) -> None:
    if consistency not in (None, "linearizable", "lease", "eventual"):
        fail(f"--consistency: expected linearizable, lease or eventual, got {consistency!r}", 2)


@app.command()
def status(
    endpoints: EndpointsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per node.")] = False,
) -> None:
    """A table of every member (and given endpoint): id, client address, membership role,
    Raft role, term, commit and applied index, and lag behind the leader's log."""
    from cli.member import cluster_table, print_status

    print_status(_client_call(endpoints, 10.0, cluster_table), as_json)


app.add_typer(bench_app, name="bench")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(member_app, name="member")
app.add_typer(leader_app, name="leader")


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
