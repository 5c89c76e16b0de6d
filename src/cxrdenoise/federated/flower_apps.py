"""Flower ServerApp and ClientApp for the federated stage (Message API; run by the Deployment Engine).

Both read the run's spec.json, whose path comes in the run config (`spec`); a SuperNode's site number comes in
its node config (`site`). The server's round loop is `server.run_rounds`; a site's work is `site.local_train`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from ..errors import CxrError
from .server import Reply, run_rounds
from .site import local_train

server_app = ServerApp()
client_app = ClientApp()

NODE_WAIT_S = 300


def _spec(context: Context) -> dict:
    return json.loads(Path(str(context.run_config["spec"])).read_text())


def record_bytes(record: ArrayRecord) -> int:
    """Bytes of the serialized arrays in a record (what the message carries for the weights)."""
    return sum(len(array.data) for array in record.values())


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
        record = ArrayRecord(arrays)
        sent = record_bytes(record)
        config = ConfigRecord({"server-round": server_round})
        messages = [Message(RecordDict({"arrays": record, "config": config}), dst_node_id=node,
                            message_type="train") for node in nodes]
        replies = []
        for reply in grid.send_and_receive(messages):
            if reply.has_error():
                raise CxrError(f"federated round {server_round}: a site failed ({reply.error.reason})")
            metrics = dict(reply.content["metrics"])
            back = reply.content["arrays"]
            replies.append(Reply(site=int(metrics.pop("site")), arrays=back.to_numpy_ndarrays(),
                                 n_examples=int(metrics["num-examples"]), bytes_sent=sent,
                                 bytes_received=record_bytes(back), metrics=metrics))
        return replies

    run_rounds(spec, exchange, log)


@client_app.train()
def client_train(msg: Message, context: Context) -> Message:
    spec = _spec(context)
    site = int(context.node_config["site"])
    server_round = int(msg.content["config"]["server-round"])
    arrays, metrics = local_train(spec, site, msg.content["arrays"].to_numpy_ndarrays(), server_round)
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)}), reply_to=msg)
