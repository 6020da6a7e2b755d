"""``trioraft member list|add|promote|remove|replace``, ``trioraft leader transfer`` and the
table of ``trioraft status`` (docs/membership.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import trio
import typer

from wire import client_messages as cm
from wire import member_messages as mm
from wire.errors import TrioraftError

member_app = typer.Typer(
    help="Cluster membership: list, add, promote, remove.", no_args_is_help=True
)
leader_app = typer.Typer(help="Leadership.", no_args_is_help=True)

EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        envvar="TRIORAFT_ENDPOINTS",
        help="Client endpoints, comma-separated (default: $TRIORAFT_ENDPOINTS).",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds, retries included.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _call(endpoints: str | None, timeout: float, op: Any) -> Any:
    from cli.main import _client_call

    return _client_call(endpoints, timeout, op)


def membership_rows(meta: mm.ClusterMetadata) -> list[dict[str, Any]]:
    m = meta.membership
    progress = {p.node_id: p.match for p in meta.progress}
    rows = []
    for node in m.ids():
        addr = m.member(node)
        row: dict[str, Any] = {
            "id": node,
            "role": m.role(node),
            "leader": node == meta.leader_id,
            "peer_addr": addr.peer_addr if addr else "",
            "client_addr": addr.client_addr if addr else "",
        }
        if node in progress:
            row["match"] = progress[node]
        rows.append(row)
    return rows


def _print_membership(meta: mm.ClusterMetadata, as_json: bool) -> None:
    rows = membership_rows(meta)
    if as_json:
        m = meta.membership
        out = {"index": m.index, "joint": m.joint, "leader": meta.leader_id, "members": rows}
        typer.echo(json.dumps(out))
        return
    header = ("ID", "ROLE", "PEER ADDRESS", "CLIENT ADDRESS")
    table = [
        (
            str(r["id"]) + (" *" if r["leader"] else ""),
            r["role"],
            r["peer_addr"],
            r["client_addr"] or "-",
        )
        for r in rows
    ]
    _table(header, table)
    typer.echo(f"configuration at log index {meta.membership.index}; * leader")


def _print_change(m: mm.ClusterMembership, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"index": m.index, "voters": m.voters, "learners": m.learners}))
        return
    learners = " ".join(map(str, m.learners)) or "-"
    typer.echo(
        f"OK configuration at {m.index}: voters {' '.join(map(str, m.voters))}; learners {learners}"
    )


@member_app.command("list")
def member_list(
    endpoints: EndpointsOpt = None, timeout: TimeoutOpt = 10.0, as_json: JsonOpt = False
) -> None:
    """The members, their roles and addresses, as the leader sees them."""
    meta = _call(endpoints, timeout, lambda c: c.cluster_metadata())
    _print_membership(meta, as_json)


@member_app.command("add")
def member_add(
    node_id: Annotated[int, typer.Argument(help="The new member's id.")],
    peer_addr: Annotated[str, typer.Option(help="Its peer address, tcp://HOST:PORT.")],
    client_addr: Annotated[str, typer.Option(help="Its client address.")] = "",
    promote: Annotated[
        bool, typer.Option(help="Let the leader promote it to voter once it caught up.")
    ] = False,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Add a learner (a non-voting member). Start it with --join, or with the same id and
    addresses; then promote it (or pass --promote)."""
    change = mm.MemberChange.add_learner(node_id, peer_addr, client_addr, auto_promote=promote)
    _print_change(_call(endpoints, timeout, lambda c: c.update_cluster_conf([change])), as_json)


@member_app.command("promote")
def member_promote(
    node_id: int,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Make a learner a voter (joint consensus: done once the new configuration commits)."""
    _print_change(_call(endpoints, timeout, lambda c: c.promote(node_id)), as_json)


@member_app.command("remove")
def member_remove(
    node_id: int,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove a voter or learner (the leader too: it hands over and steps down)."""
    _print_change(_call(endpoints, timeout, lambda c: c.remove_member(node_id)), as_json)


@member_app.command("replace")
def member_replace(
    old: Annotated[int, typer.Argument(help="The voter to remove.")],
    new: Annotated[int, typer.Argument(help="The learner to promote in its place.")],
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Promote learner NEW and remove OLD in one joint change."""
    _print_change(_call(endpoints, timeout, lambda c: c.replace_member(old, new)), as_json)


@leader_app.command("transfer")
def leader_transfer(
    to: Annotated[int | None, typer.Option("--to", help="The voter to hand over to.")] = None,
    endpoints: EndpointsOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Hand leadership to voter --to (default: the most up-to-date one)."""
    reply = _call(endpoints, timeout, lambda c: c.transfer_leader(to))
    typer.echo(f"OK node {reply.leader_id} leads (term {reply.term})")


async def cluster_table(client: Any) -> list[dict[str, Any]]:
    """One row per member (and per given endpoint): its id, client address, membership
    role, Raft role, term, commit, applied index and lag (leader's last index - applied)."""
    try:
        meta: mm.ClusterMetadata | None = await client.cluster_metadata(timeout=3.0)
    except TrioraftError:
        meta = None
    endpoints = list(client.endpoints)
    if meta is not None:
        for a in meta.membership.members:
            if a.client_addr and a.client_addr not in endpoints:
                endpoints.append(a.client_addr)
    results: dict[str, Any] = {}

    async def ask(endpoint: str) -> None:
        try:
            results[endpoint] = await client.status(endpoint, timeout=2.0)
        except TrioraftError as exc:
            results[endpoint] = exc

    async with trio.open_nursery() as nursery:
        for endpoint in endpoints:
            nursery.start_soon(ask, endpoint)
    leader_last = max(
        (
            st.last_index
            for st in results.values()
            if isinstance(st, cm.StatusReply) and st.role == cm.Role.LEADER
        ),
        default=None,
    )
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for endpoint in endpoints:
        st = results[endpoint]
        if isinstance(st, TrioraftError):
            rows.append({"endpoint": endpoint, "error": str(st)})
            continue
        seen.add(st.node_id)
        row: dict[str, Any] = {
            "endpoint": endpoint,
            "id": st.node_id,
            "member": meta.membership.role(st.node_id) if meta else "?",
            "role": st.role.name.lower(),
            "term": st.term,
            "leader": st.leader_id,
            "commit": st.commit,
            "applied": st.applied,
            "lag": None if leader_last is None else max(0, leader_last - st.applied),
        }
        rows.append(row)
    if meta is not None:  # members nobody could ask (unknown client address or down)
        progress = {p.node_id: p.match for p in meta.progress}
        for node in meta.membership.ids():
            if node not in seen and not any(r.get("id") == node for r in rows):
                lag = (
                    None
                    if leader_last is None or node not in progress
                    else leader_last - progress[node]
                )
                rows.append(
                    {
                        "endpoint": "-",
                        "id": node,
                        "member": meta.membership.role(node),
                        "error": "no client address or unreachable",
                        "lag": lag,
                    }
                )
    return rows


def print_status(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    header = ("ID", "ADDRESS", "MEMBER", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG")
    table = []
    for r in rows:
        if "error" in r:
            lag = "-" if r.get("lag") is None else str(r["lag"])
            table.append(
                (
                    str(r.get("id", "?")),
                    r["endpoint"],
                    r.get("member", "?"),
                    f"({r['error']})",
                    "",
                    "",
                    "",
                    lag,
                )
            )
            continue
        table.append(
            (
                str(r["id"]),
                r["endpoint"],
                r["member"],
                r["role"],
                str(r["term"]),
                str(r["commit"]),
                str(r["applied"]),
                "-" if r["lag"] is None else str(r["lag"]),
            )
        )
    _table(header, table)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        typer.echo("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=False)).rstrip())
