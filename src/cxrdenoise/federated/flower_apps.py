"""Flower ServerApp and ClientApp for the federated stage (Message API; run by the Deployment Engine).

Both read the run's spec.json, whose path comes in the run config (`spec`); a SuperNode's site number comes in
its node config (`site`). The server's round loop is `server.run_rounds`; a site's work is `site.local_train`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from ..errors import CxrError
from .server import Reply, run_rounds
from .site import local_train
from .weights import build, layout, pack, to_arrays, unpack

server_app = ServerApp()
client_app = ClientApp()

NODE_WAIT_S = 300
# How often the ServerApp asks the SuperLink for the sites' replies. Flower's Grid.send_and_receive sleeps 3 s
# between pulls, which on a small run is a large share of a round; a pull is one local request.
REPLY_POLL_S = 0.2


def _spec(context: Context) -> dict:
    return json.loads(Path(str(context.run_config["spec"])).read_text())


def record_bytes(record: ArrayRecord) -> int:
    """Bytes of the serialized arrays in a record (what the message carries for the weights)."""
    return sum(len(array.data) for array in record.values())


def process_started_at() -> float | None:
    """Wall-clock time this process was created (Linux /proc), to split a ClientApp's start-up from its work."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def send_and_receive(grid: Grid, messages: list[Message], poll_s: float = REPLY_POLL_S) -> list[Message]:
    """Push `messages`, then pull until every one has its reply (Grid.send_and_receive with a shorter poll)."""
    waiting = set(grid.push_messages(messages))
    replies: list[Message] = []
    while waiting:
        got = list(grid.pull_messages(waiting))
        replies.extend(got)
        waiting.difference_update(m.metadata.reply_to_message_id for m in got)
        if waiting:
            time.sleep(poll_s)
    return replies


def _log(spec: dict):
    path = Path(spec["run_dir"]) / "server.log"

    def log(msg: str) -> None:
        with path.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")
        print(msg, flush=True)
    return log


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    spec = _spec(context)
    log = _log(spec)
    deadline = time.monotonic() + NODE_WAIT_S
    nodes = list(grid.get_node_ids())
    while len(nodes) < spec["n_sites"]:
        if time.monotonic() > deadline:
            raise CxrError(f"federated: {len(nodes)} of {spec['n_sites']} SuperNodes connected in {NODE_WAIT_S}s")
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())

    def exchange(arrays, server_round):
        like = layout(arrays)
        record = ArrayRecord([pack(arrays)])
        sent = record_bytes(record)
        config = ConfigRecord({"server-round": server_round})
        messages = [Message(RecordDict({"arrays": record, "config": config}), dst_node_id=node,
                            message_type="train") for node in nodes]
        replies = []
        sent_at = time.time()
        for reply in send_and_receive(grid, messages):
            received_at = time.time()
            if reply.has_error():
                raise CxrError(f"federated round {server_round}: a site failed ({reply.error.reason})")
            metrics = dict(reply.content["metrics"])
            back = reply.content["arrays"]
            replies.append(Reply(site=int(metrics.pop("site")), arrays=unpack(back.to_numpy_ndarrays()[0], like),
                                 n_examples=int(metrics["num-examples"]), bytes_sent=sent,
                                 bytes_received=record_bytes(back),
                                 metrics={**metrics, **round_trip(metrics, sent_at, received_at)}))
        return replies

    run_rounds(spec, exchange, log)


def round_trip(metrics: dict, sent_at: float, received_at: float) -> dict:
    """Where a site's round went, from the server's send to its receipt of the reply (one machine's clock):
    deliver_s until the ClientApp process existed (SuperNode and SuperExec polling, spawn), startup_s until
    the ClientApp's code ran (Python, Flower, torch imports, fetching the message), train_s (local training),
    return_s until the server held the reply (push, polling)."""
    timeline = {k: metrics.pop(k, None) for k in ("t_process", "t_enter", "t_leave")}
    if None in timeline.values() or timeline["t_process"] < 0:
        return {"round_trip_s": received_at - sent_at}
    return {"round_trip_s": received_at - sent_at, "deliver_s": timeline["t_process"] - sent_at,
            "startup_s": timeline["t_enter"] - timeline["t_process"], "return_s": received_at - timeline["t_leave"]}


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    entered = time.time()
    spec = _spec(context)
    site = int(context.node_config["site"])
    server_round = int(msg.content["config"]["server-round"])
    like = layout(to_arrays(build(spec)))
    arrays, metrics = local_train(spec, site, unpack(msg.content["arrays"].to_numpy_ndarrays()[0], like),
                                  server_round)
    metrics = {**metrics, "t_process": process_started_at() or -1.0, "t_enter": entered, "t_leave": time.time()}
    return Message(RecordDict({"arrays": ArrayRecord([pack(arrays)]), "metrics": MetricRecord(metrics)}),
                   reply_to=msg)
