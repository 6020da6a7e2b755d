"""``trioraft snapshot save | inspect | restore`` (like ``etcdctl snapshot``).

- ``save FILE``: a fresh snapshot of a running cluster, through the client port, with a
  progress bar; the file appears only once its SHA-256 and records check out.
- ``inspect FILE``: index, term, membership, key and session counts, size, checksum.
- ``restore FILE --data-dir DIR --id N --peers ...``: seeds the data dir of one node of a
  new cluster with the snapshot's data. Run it once per member (same file, same peers),
  then start each with ``trioraft run`` and the same settings.

Exit codes: 0 ok, 1 failure (corrupt file, unreachable cluster, data dir in use), 2 usage.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import trio
import typer

from wire.errors import ConfigError, TrioraftError

if TYPE_CHECKING:  # storage loads RocksDB: only the commands that need it import it
    from storage.snapshot_file import SnapshotInfo

snapshot_app = typer.Typer(
    help="Save, inspect and restore snapshots (docs/snapshots.md).", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"trioraft: {message}", err=True)
    raise typer.Exit(code)


def _describe(path: str, info: SnapshotInfo, verified: bool) -> dict[str, Any]:
    h = info.header
    return {
        "file": path,
        "index": h.index,
        "term": h.term,
        "voters": list(h.voters),
        "cluster_id": f"{h.cluster_id:#x}",
        "node_id": h.node_id,
        "created": datetime.datetime.fromtimestamp(h.created_ms / 1000, datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "keys": info.counts.get("keys", 0),
        "sessions": info.counts.get("sessions", 0),
        "records": info.counts["records"],
        "data_bytes": info.counts.get("data_bytes", 0),
        "size": info.size,
        "sha256": info.sha256.hex(),
        "checksum": "ok" if verified else "not checked",
    }


def _print(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(row))
        return
    width = max(len(k) for k in row)
    for key, value in row.items():
        typer.echo(f"{key:<{width}}  {value}")


@snapshot_app.command()
def save(
    file: Annotated[Path, typer.Argument(help="Where to write the snapshot.")],
    endpoints: Annotated[
        str | None,
        typer.Option(envvar="TRIORAFT_ENDPOINTS", help="Client endpoints, comma-separated."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="The node that builds it (default: the leader).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for the build and each piece.")] = 60.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Save a snapshot of a running cluster to FILE."""
    from trioraft.client import open_client

    bar: dict[str, Any] = {}

    def show(done: int, total: int) -> None:
        if not progress:
            return
        if "bar" not in bar:
            bar["bar"] = typer.progressbar(
                length=total, label="snapshot", file=sys.stderr, show_pos=True
            )
            bar["bar"].__enter__()
            bar["done"] = 0
        bar["bar"].update(done - bar["done"])
        bar["done"] = done

    async def go() -> Any:
        async with open_client(endpoints, timeout=timeout) as client:
            return await client.save_snapshot(
                str(file), endpoint=endpoint, timeout=timeout, progress=show
            )

    try:
        saved = trio.run(go)
    except TrioraftError as exc:
        _fail(str(exc))
        return
    finally:
        if "bar" in bar:
            bar["bar"].__exit__(None, None, None)
    row = _describe(str(file), saved.info, True)
    row["from"] = saved.endpoint
    if as_json:
        _print(row, True)
    else:
        typer.echo(
            f"saved snapshot index {saved.index} term {saved.term} ({saved.size} bytes, "
            f"{row['keys']} keys) from {saved.endpoint} to {file}"
        )


@snapshot_app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A snapshot file.")],
    as_json: JsonOpt = False,
) -> None:
    """Print a snapshot's index, term, membership, counts, size and checksum status;
    exit 1 if it is damaged."""
    from storage.snapshot_file import SnapshotCorrupt, read_info

    try:
        info = read_info(str(file), verify=True)
    except SnapshotCorrupt as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
        return
    _print(_describe(str(file), info, True), as_json)


@snapshot_app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A snapshot file (from `snapshot save`).")],
    data_dir: Annotated[str, typer.Option(help="The new node's data dir (must be new).")],
    node_id: Annotated[int | None, typer.Option("--id", help="The new node's id.")] = None,
    peers: Annotated[
        str | None, typer.Option(help="The new cluster: 1=tcp://host:port,2=...")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML config of the new node (as for `run`).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Seed DATA_DIR for node ID of a new cluster from FILE. Do it for every member with
    the same file and peers, then start them with `trioraft run`."""
    from storage.snapshot_file import SnapshotCorrupt, read_info
    from trioraft.config import load_config, parse_peers

    try:
        peer_map = parse_peers(peers) if peers else None
        cfg = load_config(
            str(config) if config else None,
            node_id=node_id,
            peers=peer_map,
            peer_addr=peer_map.get(node_id) if peer_map and node_id else None,
            data_dir=data_dir,
        )
    except ConfigError as exc:
        _fail(str(exc), 2)
        return
    try:
        info = read_info(str(file), verify=True)
        restored = _restore(str(file), info, cfg.data_dir, cfg.cluster_id, cfg.node_id)
    except SnapshotCorrupt as exc:
        _fail(f"{exc}; nothing was restored")
        return
    except TrioraftError as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"restore failed: {exc}")
        return
    row = _describe(str(file), info, True)
    row.update(data_dir=restored, new_node_id=cfg.node_id, new_cluster_id=f"{cfg.cluster_id:#x}")
    if as_json:
        _print(row, True)
    else:
        typer.echo(
            f"restored snapshot index {info.header.index} term {info.header.term} "
            f"({row['keys']} keys) into {restored} for node {cfg.node_id} of cluster "
            f"{cfg.cluster_id:#x}"
        )


def _restore(path: str, info: SnapshotInfo, data_dir: str, cluster_id: int, node: int) -> str:
    from storage import Identity, open_store
    from storage.rocks import DB_NAME
    from storage.snapshot_file import iter_items
    from wire.errors import StorageError
    from wire.messages import HardState, SnapshotMeta

    target = os.path.abspath(data_dir)
    h = info.header
    # The new cluster's configuration is its own (--peers, static): the snapshot brings
    # the data. The file is not copied in: its header names the old cluster's members;
    # the new nodes write snapshots of their own.
    meta = SnapshotMeta(h.index, h.term, ())
    existed = os.path.exists(os.path.join(target, DB_NAME))
    store = open_store(target, Identity(cluster_id, node))
    try:
        if existed and store.pending_install() != meta:
            raise StorageError(f"data dir {target} already holds data; restore needs a new one")
        store.begin_install(meta)  # an interrupted restore is simply run again
        store.replace_kv(iter_items(path))
        store.finish_install(meta, HardState(term=h.term, vote=0, commit=h.index))
    finally:
        store.close()
    return target
