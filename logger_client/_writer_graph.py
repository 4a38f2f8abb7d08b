"""SummaryWriter methods for model graphs (torch, ONNX).

`add_graph` traces the model on the calling thread (torch is imported there, and only there) and
walks the traced graph as torch.utils.tensorboard does, into a plain description: the daemon
builds the GraphDef from it. No protobuf in the training process.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from typing import Any

from ._writer_base import WriterBase, walltime_or_now
from .protocol import MAX_MESSAGE_BYTES, RecordKind

_GRAPH = RecordKind.GRAPH
_ONNX_GRAPH = RecordKind.ONNX_GRAPH
#: The record tag of graphs: a graph is an event without a summary tag, at step 0, as torch
#: writes it; a tag of its own keeps it out of the step order of the summary tags.
GRAPH_RECORD_TAG = "\x00graph"
#: What torch.utils.tensorboard writes beside the graph: run metadata tagged "step1" whose step
#: stats name one CPU device (torch does not say where the model ran).
_TORCH_RUN_METADATA = {"tag": "step1", "devices": ["/device:CPU:0"]}
#: The GraphDef producer version torch writes.
_TORCH_PRODUCER = 22
#: The largest ONNX file logged: it travels whole in one message, which the daemon takes up to
#: MAX_MESSAGE_BYTES with the other records batched beside it.
MAX_ONNX_BYTES = MAX_MESSAGE_BYTES // 2
_ONNX_MISSING = "add_onnx_graph needs the onnx package: pip install 'tb-logger-service[onnx]'"


class GraphMethods(WriterBase):
    """The `add_*` methods for model graphs (torch, ONNX) (mixed into `SummaryWriter`)."""

    def add_graph(
        self,
        model: Any,
        input_to_model: Any = None,
        verbose: bool = False,
        use_strict_trace: bool = True,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs the graph of a torch module, as torch.utils.tensorboard's `add_graph` does.

        The model is traced here, on the calling thread, with `torch.jit.trace(model,
        input_to_model, strict=use_strict_trace)` in eval mode (its training mode is restored),
        and its graph is walked into nodes named by module scope (`Net/Linear[fc1]/input.1`), with
        each node's operator, inputs, attributes and output shape. The daemon writes the GraphDef
        event and the run metadata event ("step1", one CPU device) that torch writes, so
        TensorBoard's graph plugin shows the same graph. tensorboardX writes the same graph with
        its run metadata tagged "profiler". `verbose` prints the traced graph.

        Raises TypeError when `model` is not a `torch.nn.Module`, and RuntimeError (from the
        tracer's error) when the model cannot be traced with `input_to_model`.
        """
        description = describe_torch_graph(model, input_to_model, bool(verbose), bool(use_strict_trace))
        self._queue_record(_GRAPH, GRAPH_RECORD_TAG, 0, walltime_or_now(None), description)

    def add_onnx_graph(self, onnx_model_file: Any = None, *, prototxt: Any = None, reduce: str | None = None) -> None:
        """Logs the graph of an ONNX model file (a path, or a binary file object), as tensorboardX's
        `add_onnx_graph` does: a GraphDef with a `Variable` node per graph input and output (its
        element type and shape) and a node per operator (named after its first output, with its
        attributes as text).

        Needs the `onnx` package (`pip install 'tb-logger-service[onnx]'`) where the daemon runs;
        the training process only reads the file's bytes and never imports onnx, but it refuses
        the call when onnx is not installed. `prototxt` is torch.utils.tensorboard's name of the
        argument. Unlike tensorboardX, nothing is printed; a file that onnx cannot parse is
        counted as `encode_error` by the daemon.
        """
        if prototxt is not None:
            if onnx_model_file is not None:
                raise TypeError("add_onnx_graph takes onnx_model_file or prototxt, not both")
            onnx_model_file = prototxt
        if onnx_model_file is None:
            raise TypeError("add_onnx_graph needs onnx_model_file, the path of an ONNX model")
        if importlib.util.find_spec("onnx") is None:
            raise ImportError(_ONNX_MISSING)
        if isinstance(onnx_model_file, (str, os.PathLike)):
            with open(onnx_model_file, "rb") as file:
                _check_onnx_size(os.fstat(file.fileno()).st_size)
                data = file.read()
        elif hasattr(onnx_model_file, "read"):
            data = onnx_model_file.read()
            if not isinstance(data, bytes):
                raise TypeError("onnx_model_file must be opened in binary mode")
        else:
            raise TypeError(f"onnx_model_file must be a path or a binary file, got {type(onnx_model_file).__name__}")
        if not data:
            raise ValueError("onnx_model_file is empty")
        _check_onnx_size(len(data))
        self._queue_record(_ONNX_GRAPH, GRAPH_RECORD_TAG, 0, walltime_or_now(None), data)


def _check_onnx_size(size: int) -> None:
    if size > MAX_ONNX_BYTES:
        raise ValueError(
            f"onnx_model_file holds {size} bytes; at most {MAX_ONNX_BYTES} travel to the daemon "
            f"(save the weights as external data to log a larger model's graph)"
        )


# -- tracing a torch module ------------------------------------------------------------------------


class _Node:
    """One node of the graph while it is walked: a graph input or output ("IO Node"), an operator,
    or (once the operators are expanded) one output of an operator."""

    __slots__ = ("attr", "inputs", "io", "name", "op", "outputs", "scope", "shape")

    def __init__(
        self,
        name: str,
        op: str,
        inputs: list[str],
        shape: list[int] | None,
        attr: str = "",
        scope: str | None = None,
        io: str | None = None,
    ) -> None:
        self.name, self.op, self.inputs, self.shape = name, op, inputs, shape
        self.attr, self.scope, self.io = attr, scope, io
        self.outputs: list[tuple[str, list[int] | None]] = []


def describe_torch_graph(model: Any, args: Any, verbose: bool = False, strict: bool = True) -> dict[str, Any]:
    """The plain description of `model`'s traced graph that the daemon turns into a GraphDef:
    `{"nodes": [{"name", "op", "input", "attr"}], "versions": {"producer"}, "run_metadata"}`, each
    attribute a plain AttrValue (`{"s": str}` or `{"list": {"shape": [[dims]]}}`)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    with _eval_mode(model):
        try:
            trace = torch.jit.trace(model, args, strict=strict)
        except Exception as exc:  # the tracer raises whatever the model's forward raises
            raise RuntimeError(
                f"add_graph could not trace the model with input_to_model: {type(exc).__name__}: {exc}"
            ) from exc
    graph = trace.graph
    torch._C._jit_pass_inline(graph)
    if verbose:
        print(graph)
    nodes = _walk(graph, trace, torch)
    return {
        "nodes": [_plain(node) for node in nodes],
        "versions": {"producer": _TORCH_PRODUCER},
        "run_metadata": dict(_TORCH_RUN_METADATA),
    }


@contextmanager
def _eval_mode(model: Any) -> Any:
    training = model.training
    model.train(False)
    try:
        yield
    finally:
        model.train(training)


def _sizes(value: Any) -> list[int]:
    """A graph input's or output's shape; [1] for what is not a tensor of known shape (as torch)."""
    try:
        return list(value.type().sizes())
    except RuntimeError:
        return [1]


def _operator(node: Any) -> _Node:
    # Single quotes are blanked, as torch does: TensorBoard's graph view mangles them.
    attributes = str({key: getattr(node, node.kindOf(key))(key) for key in node.attributeNames()}).replace("'", " ")
    operator = _Node("", node.kind(), [value.debugName() for value in node.inputs()], None, attributes)
    operator.scope = node.scopeName()
    operator.outputs = [
        (value.debugName(), list(value.type().sizes()) if value.isCompleteTensor() else None)
        for value in node.outputs()
    ]
    return operator


def _module_name(module: Any, torch: Any) -> str:
    if isinstance(module, torch.jit.TracedModule):
        return str(module._name)
    return str(getattr(module, "original_name", "Module"))


def _walk(graph: Any, trace: Any, torch: Any) -> list[_Node]:
    """The nodes of a traced (inlined) graph, named and ordered as torch.utils.tensorboard's
    `_pytorch_graph.parse` names and orders them: graph inputs, graph outputs, then one node per
    operator output, each named `<module scope>/<value name>`."""
    # Graph inputs and outputs, by value name; later entries of a name replace earlier ones in
    # place, as in the dict torch keeps.
    named: dict[str, _Node] = {}
    for value in graph.inputs():
        if len(value.uses()) == 0 or value.type().kind() == "ClassType":
            continue
        named[value.debugName()] = _Node(value.debugName(), "IO Node", [], _sizes(value), io="input")

    # Operators. Module attributes (prim::GetAttr) are scoped by the chain of attribute names that
    # leads to them; the module objects themselves (ClassType) are left out.
    operators: list[_Node] = []
    attribute_scopes: dict[str, str] = {}
    for node in graph.nodes():
        if node.kind() != "prim::GetAttr":
            operators.append(_operator(node))
            continue
        key, parent = node.output().debugName(), node.input().node()
        if parent.kind() == "prim::GetAttr":
            parent_scope = attribute_scopes[parent.output().debugName()]
            attribute_scopes[key] = f"{parent_scope}/{parent_scope.split('/')[-1]}.{node.s('name')}"
        else:
            attribute_scopes[key] = f"__module.{node.s('name')}"
        if node.output().type().kind() != "ClassType":
            operator = _operator(node)
            operator.scope = attribute_scopes[key]
            operators.append(operator)

    for index, value in enumerate(graph.outputs()):
        name = f"output.{index + 1}"
        named[name] = _Node(name, "IO Node", [value.debugName()], _sizes(value), io="output")

    # Scopes name modules: `__module.fc1` becomes `Linear[fc1]`, under the traced model's name.
    aliases = {
        alias: f"{_module_name(module, torch)}[{alias.split('.')[-1]}]"
        for alias, module in trace.named_modules(prefix="__module")
    }
    base = _module_name(trace, torch)
    for operator in operators:
        parts = [aliases.get(alias, alias.split(".")[-1]) for alias in (operator.scope or "").split("/")]
        operator.scope = base + ("/" + "/".join(parts) if any(parts) else "")

    # Each operator output becomes a node; the graph's top scope names the nodes without one.
    top_scope = "default"
    for operator in operators:
        for name, shape in operator.outputs:
            if operator.scope:
                top_scope = operator.scope.split("/")[0]
            named[name] = _Node(name, operator.op, operator.inputs, shape, operator.attr, operator.scope)
    scoped: dict[str, str] = {}
    for operator in operators:
        for name in operator.inputs:
            scoped[name] = f"{operator.scope}/{name}"
    for key, node in named.items():
        if node.io is not None:
            scoped[key] = f"{node.io}/{node.name}"
        if node.scope is not None:
            scoped[key] = f"{node.scope}/{node.name}"
            if node.scope == "" and top_scope:
                scoped[node.name] = f"{top_scope}/{node.name}"
    for node in named.values():
        node.inputs = [scoped[name] for name in node.inputs]
        node.name = scoped.get(node.name, node.name)
    return list(named.values())


def _plain(node: _Node) -> dict[str, Any]:
    attr: dict[str, Any] = {"attr": {"s": node.attr}}
    if node.shape is not None:
        attr["_output_shapes"] = {"list": {"shape": [node.shape]}}
    return {"name": node.name, "op": node.op, "input": node.inputs, "attr": attr}
