"""Encoders of graphs: a traced model's plain description, or an ONNX model, as a GraphDef."""

from __future__ import annotations

from logger_client.protocol import STEP, VALUE, WALL_TIME, Record, RecordKind
from logger_daemon.encoders.base import Encoder
from logger_daemon.graph_def import graph_events, onnx_graph_def
from logger_daemon.protos.event_pb2 import Event


def encode_graph(record: Record, run_path: str) -> list[bytes]:
    """A GRAPH record (a plain description of a traced torch module): the GraphDef event and the
    run metadata event torch writes with it."""
    return graph_events(record[WALL_TIME], record[STEP], record[VALUE])


def encode_onnx_graph(record: Record, run_path: str) -> list[bytes]:
    """An ONNX_GRAPH record (the model file's bytes): one GraphDef event, as tensorboardX."""
    graph = onnx_graph_def(record[VALUE])
    return [
        Event(wall_time=record[WALL_TIME], step=record[STEP], graph_def=graph.SerializeToString()).SerializeToString()
    ]


ENCODERS: dict[int, Encoder] = {
    RecordKind.GRAPH: encode_graph,
    RecordKind.ONNX_GRAPH: encode_onnx_graph,
}
