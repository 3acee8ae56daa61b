"""Export a fitted :class:`~swifthydra.hydra.SwiftHydra` scorer to ONNX.

The graph computes exactly what ``SwiftHydra.decision_function`` computes, on CPU or any ONNX
runtime, without PyTorch or swifthydra installed:

``features`` (float64) -> standardisation by the training mean and standard deviation (in float64,
like numpy) -> float32 -> the scoring network -> ``score`` (float64, the logit),
``is_anomaly`` (``score > threshold``, compared in float64) and ``probability``
(``1 / (1 + exp(-clip(score, -60, 60)))`` in float64, like ``predict_proba``).

The scoring network is the Mixture of Mamba Experts (or the large detector with
``inference="large"``). The MoME graph is **routed** like PyTorch's sparse dispatch: the gate picks
each row's top-k experts, and expert ``e`` runs only on the rows routed to it (``NonZero`` of the
rows whose top-k holds ``e`` -> ``Gather`` of those rows -> the expert -> weighted
``ScatterElements(reduction="add")`` back into the row's score), so the arithmetic per row is that
of ``k`` experts whatever ``K`` (:func:`_routed_mome_graph`). The graph is assembled from three
PyTorch exports: the front (standardisation, power transform, gate, top-k), one expert traced once
with its weights as inputs (copied ``K`` times, each copy fed its own expert's weights) and the
output head. The selective scan is traced in its closed-form single-step form (row tokeniser) or as
the unrolled sequential loop (feature/patch tokenisers), with a dynamic batch axis. The density
prior is a fourth export, run ``PRIOR_BLOCK`` rows at a time in a ``Scan`` (:func:`_with_prior`),
so its distances to the reference rows never form one chunk-sized matrix.

With ``preprocessor`` (the default of ``swifthydra export-onnx``) the table preprocessing is put in
the graph too, so its inputs are the **table's columns, by name**: each numeric column a float64
vector (NaN = missing, imputed with the training median), each categorical column a string vector
(mapped to its one-hot block; an unseen value goes to ``__other__``; ``""`` or ``"__missing__"``
means missing). What the graph does not do: refuse missing values when the model was fitted with
``--reject-missing`` (it imputes them), reject non-finite numbers (the command line does), or parse
strings in numeric columns (cast to float64 first). Without ``preprocessor`` the single input
``features`` takes the already preprocessed matrix (``TablePreprocessor.transform``). A model with
timestamp columns can only be exported that way (``--features-only``): the graph does not parse
dates.

Needs the ``onnx`` extra (``pip install 'swifthydra[onnx]'``: onnx, onnxscript for PyTorch's
exporter, onnxruntime to run and check the graph).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from swifthydra._scoring import LOGIT_CLIP
from swifthydra.exceptions import InvalidInputError, SwiftHydraError

ONNX_OPSET = 18
ML_OPSET = 3
OUTPUTS = ("score", "is_anomaly", "probability")
# Rows of one block of the density prior's Scan (_with_prior): its 1,024 x 2,048 float32 distances
# fit in cache; 512-2,048 measured alike (docs/benchmarks.md §10.15).
PRIOR_BLOCK = 1024
_PREFIX = "__sh_"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SwiftHydraError(
            f"ONNX export needs the {module!r} package: pip install 'swifthydra[onnx]' "
            "(onnx, onnxscript, onnxruntime)."
        ) from None


def _scorer_module(est):
    """A torch module: float64 features -> (score float64, is_anomaly bool, probability float64)."""
    import copy

    import torch
    from torch import nn

    from swifthydra.nn.moe import MoMENet

    est._check_fitted()
    detector = est.mome_ if est.mome_ is not None else est.detector_
    net = copy.deepcopy(detector.model_).to("cpu").eval()

    class OnnxScorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # SwiftHydra's own feature transform, as torch ops (swifthydra._features)
            self.scaler = est.scaler_.torch_module()
            self.register_buffer("threshold", torch.tensor(float(est.threshold_), dtype=torch.float64))
            self.net = net
            self.mome = isinstance(net, MoMENet)
            if self.mome:  # each expert as its own module, for the graph that runs them all
                self.experts = nn.ModuleList(net.experts)
            prior = getattr(est, "prior_", None)  # the density prior (docs/design.md §10.1)
            self.has_prior = prior is not None
            if self.has_prior:
                self.register_buffer("prior_reference", prior.reference.detach().cpu().clone())
                self.prior_k = prior.k
                self.prior_center = prior.center
                self.prior_scale = prior.scale
                self.prior_weight = float(est.prior_scale_)
                self.prior_tail_scale = float(est.prior_tail_scale_)
                self.prior_tail_from = float(est.prior_tail_from_)

        def _mome(self, z: torch.Tensor) -> torch.Tensor:
            """Every expert on every row, the routed one(s) kept (``export_onnx(routed=False)``)."""
            x, index, weights = self.route(z)
            outs = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, K) dense
            return (outs.gather(1, index) * weights).sum(1)  # (B,)

        def route(self, z: torch.Tensor):
            """Scaled rows ``(B, F)``, routed experts ``(B, k)`` and their weights ``(B, k)``."""
            x = self.net.scaler(z)  # (B, F)
            if self.net.dense:  # dense warm-up state: every row to expert 0 alone
                index = torch.zeros_like(x[:, :1], dtype=torch.long)
                return x, index, torch.ones_like(x[:, :1])
            probs, index = self.net.route(x, sample=False)  # (B, K), (B, k)
            chosen = probs.gather(1, index)  # (B, k)
            return x, index, chosen / chosen.sum(-1, keepdim=True)  # 1 for top-1, as in MoMENet

        def front(self, features: torch.Tensor):
            return self.route(self.features(features))

        def prior(self, features: torch.Tensor) -> torch.Tensor:
            """The weighted density prior of float64 table features (float64, (B,)), on the
            standardised rows as ``SwiftHydra.prior_.term`` of ``scaler_.standardise(X)``; zeros without one."""
            if not self.has_prior:
                return features[:, 0] * 0.0
            from swifthydra._features import MAX_STANDARDISED
            from swifthydra.detectors.prior import log_knn_distance, prior_part

            z = ((features - self.scaler.center) / self.scaler.scale).clamp(-MAX_STANDARDISED, MAX_STANDARDISED)
            term = (log_knn_distance(z, self.prior_reference, self.prior_k) - self.prior_center) / self.prior_scale
            return prior_part(term, self.prior_weight, self.prior_tail_scale, self.prior_tail_from)

        def features(self, features: torch.Tensor) -> torch.Tensor:
            """float64 table features -> the float32 rows the network scores."""
            return self.scaler(features)

        def head(self, logit: torch.Tensor, prior: torch.Tensor):
            score = logit.to(torch.float64) + prior
            probability = 1.0 / (1.0 + torch.exp(-score.clamp(-LOGIT_CLIP, LOGIT_CLIP)))  # swifthydra._scoring.sigmoid
            return score, score > self.threshold, probability

        def given_prior(self, features: torch.Tensor, prior: torch.Tensor):
            """The outputs, with the weighted prior ``(B,)`` computed apart (by :func:`_with_prior`)."""
            z = self.features(features)
            logit = self._mome(z) if self.mome else self.net(z)  # (B,) float32
            return self.head(logit, prior)

        def forward(self, features: torch.Tensor):  # (B, F) float64
            return self.given_prior(features, self.prior(features))

    return OnnxScorer().eval()


class _Part:
    """Wraps one method of the scorer (an ``nn.Module``) as a module for torch.export."""

    @staticmethod
    def make(owner, method: str, n_inputs: int = 1):
        from torch import nn

        class Part(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.owner = owner

            def forward(self, x):
                return getattr(self.owner, method)(x)

        class Part2(Part):
            def forward(self, x, y):
                return getattr(self.owner, method)(x, y)

        return (Part if n_inputs == 1 else Part2)().eval()


def _export(module, example: tuple, input_names: list[str], output_names: list[str], opset: int,
            batched: int = 1):
    import torch
    from torch.export import Dim

    batch = Dim("batch")
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                module, example, None, input_names=input_names, output_names=output_names,
                dynamic_shapes=({0: batch},) * batched + (None,) * (len(example) - batched),
                dynamo=True, opset_version=opset, external_data=False, verbose=False,
            )
        except Exception as exc:  # exporter failures are internal, not the user's doing
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if os.environ.get("SWIFTHYDRA_DEBUG_EXPORT"):
                raise
            raise SwiftHydraError(f"PyTorch could not export the scorer to ONNX: {first}") from None
    model = program.model_proto
    if len(model.functions):  # the composition below copies graphs, not local functions
        import onnx

        model = onnx.inliner.inline_local_functions(model)
    return model


def _routed_mome_graph(module, n_features: int, opset: int):
    """The routed MoME graph: (features, weighted prior) -> (score, is_anomaly, probability), each
    expert run only on the rows routed to it (see the module docstring)."""
    import copy

    import torch
    from onnx import TensorProto, compose, helper, numpy_helper
    from torch import nn
    from torch.func import functional_call

    experts = module.experts  # each expert as its own module, made once by _scorer_module
    n_experts = len(experts)
    front = _export(
        _Part.make(module, "front"),
        (torch.zeros(3, n_features, dtype=torch.float64),), ["features"], ["x", "index", "weights"], opset,
    )
    expert0 = copy.deepcopy(experts[0])
    names = [n for n, _ in expert0.named_parameters()] + [n for n, _ in expert0.named_buffers()]

    state0 = {**dict(expert0.named_parameters()), **dict(expert0.named_buffers())}
    shapes = [tuple(state0[n].shape) for n in names]
    sizes = [int(np.prod(sh, dtype=np.int64)) for sh in shapes]

    def flat_weights(expert) -> np.ndarray:
        state = {**dict(expert.named_parameters()), **dict(expert.named_buffers())}
        return np.concatenate([state[n].detach().cpu().numpy().astype(np.float32).reshape(-1) for n in names])

    class Expert(nn.Module):  # one expert, all its weights one float32 vector input
        def __init__(self) -> None:
            super().__init__()
            self.expert = expert0

        def forward(self, x, flat):
            tensors = [t.reshape(sh) for t, sh in zip(flat.split(sizes), shapes, strict=True)]
            return functional_call(self.expert, dict(zip(names, tensors, strict=True)), (x,))

    expert = _export(Expert().eval(), (torch.zeros(3, n_features), torch.from_numpy(flat_weights(expert0))),
                     ["x", "flat"], ["logit"], opset)
    head = _export(_Part.make(module, "head", 2), (torch.zeros(3), torch.zeros(3, dtype=torch.float64)),
                   ["logit", "prior"], list(OUTPUTS), opset, batched=2)

    nodes, inits = [], []
    front = compose.add_prefix(front, "front_")
    head = compose.add_prefix(head, "head_")
    nodes.append(helper.make_node("Identity", ["features"], ["front_features"]))
    nodes += list(front.graph.node)
    inits += list(front.graph.initializer)
    x, index, weights = "front_x", "front_index", "front_weights"
    r = "route_"
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), r + "axis1"))
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), r + "axis0"))
    nodes.append(helper.make_node("Shape", [x], [r + "shape"], end=1))  # (B,)
    nodes.append(helper.make_node("ConstantOfShape", [r + "shape"], [r + "zeros"],
                                  value=numpy_helper.from_array(np.zeros(1, dtype=np.float32))))
    rows_all, parts_all = [], []
    for e in range(n_experts):
        p = f"e{e}_"
        inits.append(numpy_helper.from_array(np.array(e, dtype=np.int64), p + "id"))
        nodes += [
            helper.make_node("Equal", [index, p + "id"], [p + "hit"]),  # (B, k)
            helper.make_node("Cast", [p + "hit"], [p + "hitf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [weights, p + "hitf"], [p + "wk"]),
            helper.make_node("ReduceSum", [p + "wk", r + "axis1"], [p + "w"], keepdims=0),  # (B,)
            helper.make_node("ReduceMax", [p + "hitf", r + "axis1"], [p + "any"], keepdims=0),
            helper.make_node("Cast", [p + "any"], [p + "anyb"], to=TensorProto.BOOL),
            helper.make_node("NonZero", [p + "anyb"], [p + "nz"]),  # (1, n_e)
            helper.make_node("Squeeze", [p + "nz", r + "axis0"], [p + "rows"]),  # (n_e,)
            helper.make_node("Gather", [x, p + "rows"], [p + "x"], axis=0),  # (n_e, F)
            helper.make_node("Gather", [p + "w", p + "rows"], [p + "wr"], axis=0),
        ]
        copy = compose.add_prefix(expert, p)
        inits.append(numpy_helper.from_array(flat_weights(experts[e]), p + "flat"))
        inits += list(copy.graph.initializer)
        nodes += list(copy.graph.node)
        nodes.append(helper.make_node("Mul", [p + "wr", p + "logit"], [p + "part"]))
        rows_all.append(p + "rows")
        parts_all.append(p + "part")
    nodes += [
        helper.make_node("Concat", rows_all, [r + "rows"], axis=0),
        helper.make_node("Concat", parts_all, [r + "parts"], axis=0),
        helper.make_node("ScatterElements", [r + "zeros", r + "rows", r + "parts"], ["head_logit"],
                         axis=0, reduction="add"),
        helper.make_node("Identity", ["prior"], ["head_prior"]),
    ]
    nodes += list(head.graph.node)
    inits += list(head.graph.initializer)
    outputs = _unprefixed_outputs(head.graph.output, "head_", nodes)
    inputs = [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["batch", n_features]),
              helper.make_tensor_value_info("prior", TensorProto.DOUBLE, ["batch"])]
    graph = helper.make_graph(nodes, "swifthydra_routed_mome", inputs, outputs, inits)
    return _composed_model(graph, (front, expert, head))


def _unprefixed_outputs(outputs, prefix: str, nodes: list) -> list:
    """The outputs of a graph merged under ``prefix``, back to their plain names: appends one
    ``Identity`` per output to ``nodes`` and returns the new outputs (one value per row)."""
    from onnx import helper

    plain = []
    for out in outputs:
        name = out.name[len(prefix):]
        nodes.append(helper.make_node("Identity", [out.name], [name]))
        plain.append(helper.make_tensor_value_info(name, out.type.tensor_type.elem_type, ["batch"]))
    return plain


def _composed_model(graph, parts):
    """A model of ``graph``, assembled from the graphs of the models ``parts``: their highest opset
    of each domain and their highest IR version."""
    from onnx import helper

    opsets = {}
    for m in parts:
        for o in m.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                             ir_version=max(m.ir_version for m in parts))



@contextlib.contextmanager
def _quiet():
    """PyTorch's exporter prints progress and warnings (e.g. torchvision not installed)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _torch_graph(est, opset: int, *, routed: bool = True):
    import torch

    _require("onnxscript")
    module = _scorer_module(est)
    n_features = int(est.n_features_in_)
    if routed and module.mome:
        main = _routed_mome_graph(module, n_features, opset)
    else:
        main = _export(_Part.make(module, "given_prior", 2),
                       (torch.zeros(3, n_features, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)),
                       ["features", "prior"], list(OUTPUTS), opset, batched=2)
    prior = _export(_Part.make(module, "prior"), (torch.zeros(3, n_features, dtype=torch.float64),),
                    ["features"], ["prior"], opset)
    return _with_prior(main, prior, n_features, blocked=module.has_prior)


def _with_prior(main, prior, n_features: int, *, blocked: bool, block: int = PRIOR_BLOCK):
    """``main`` (inputs ``features`` and ``prior``) fed by ``prior`` (``features`` -> ``prior``): one
    graph with the input ``features``.

    ``blocked``: the prior runs ``block`` rows at a time in a ``Scan`` (the rows padded to a multiple
    of ``block``, the padding's values dropped), so its ``block x reference`` distance matrices
    stay in the processor's cache instead of one ``chunk x reference`` matrix in memory
    (docs/benchmarks.md §10.15)."""
    from onnx import TensorProto, compose, helper, numpy_helper

    prior = compose.add_prefix(prior, "prior_")
    main = compose.add_prefix(main, "main_")
    nodes = [helper.make_node("Identity", ["features"], ["main_features"])]
    inits = []
    if blocked:
        p = "prior_block_"
        body = helper.make_graph(list(prior.graph.node), "prior_block", list(prior.graph.input),
                                 list(prior.graph.output), list(prior.graph.initializer))
        for name, value in (("size", [block]), ("zero", [0]), ("one", [1]), ("shape", [-1, block, n_features]), ("flat", [-1])):
            inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), p + name))
        nodes += [
            helper.make_node("Shape", ["features"], [p + "rows"], end=1),  # (1,): B
            helper.make_node("Max", [p + "rows", p + "one"], [p + "least"]),  # at least one block
            helper.make_node("Neg", [p + "least"], [p + "minus"]),
            helper.make_node("Mod", [p + "minus", p + "size"], [p + "rest"]),  # (-B) mod block, in [0, block)
            helper.make_node("Sub", [p + "least", p + "rows"], [p + "empty"]),  # 1 for an empty batch
            helper.make_node("Add", [p + "rest", p + "empty"], [p + "pad"]),
            helper.make_node("Concat", [p + "zero", p + "zero", p + "pad", p + "zero"], [p + "pads"], axis=0),
            helper.make_node("Pad", ["features", p + "pads"], [p + "padded"]),  # zero rows at the end
            helper.make_node("Reshape", [p + "padded", p + "shape"], [p + "blocks"]),  # (B / block, block, F)
            helper.make_node("Scan", [p + "blocks"], [p + "terms"], body=body, num_scan_inputs=1),
            helper.make_node("Reshape", [p + "terms", p + "flat"], [p + "all"]),
            helper.make_node("Slice", [p + "all", p + "zero", p + "rows"], ["main_prior"]),  # the B real rows
        ]
    else:
        nodes.append(helper.make_node("Identity", ["features"], ["prior_features"]))
        nodes += list(prior.graph.node)
        inits += list(prior.graph.initializer)
        nodes.append(helper.make_node("Identity", ["prior_prior"], ["main_prior"]))
    nodes += list(main.graph.node)
    inits += list(main.graph.initializer)
    outputs = _unprefixed_outputs(main.graph.output, "main_", nodes)
    inputs = [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["batch", n_features])]
    graph = helper.make_graph(nodes, main.graph.name, inputs, outputs, inits)
    return _composed_model(graph, (prior, main))


def _check_column_names(pre) -> None:
    dates = list(getattr(pre, "datetimes_", {}))
    if dates:
        raise InvalidInputError(
            f"the model has timestamp columns {dates}, which the ONNX graph cannot parse: export with "
            "--features-only (preprocessor=None) and compute the features with TablePreprocessor.transform "
            "before running the graph."
        )
    columns = list(pre.numeric_columns_) + list(pre.categories_)
    clash = [c for c in columns if c in OUTPUTS or c.startswith(_PREFIX)]
    if clash:
        raise InvalidInputError(
            f"columns {clash} clash with names of the ONNX graph ({list(OUTPUTS)}, {_PREFIX}*): "
            "export with --features-only and preprocess outside the graph."
        )


def _with_preprocessing(model, pre) -> Any:
    """Put the table preprocessing in front of the scorer graph: inputs become the columns."""
    onnx = _require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from swifthydra.tabular.table import MISSING_CATEGORY

    _check_column_names(pre)
    model = onnx.compose.add_prefix(model, _PREFIX)
    graph = model.graph
    nodes, inits, inputs = [], [], []
    p = _PREFIX + "pre_"
    blocks = []
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), p + "axis1"))
    if pre.numeric_columns_:
        unsq = []
        for i, c in enumerate(pre.numeric_columns_):
            inputs.append(helper.make_tensor_value_info(c, TensorProto.DOUBLE, ["batch"]))
            nodes.append(helper.make_node("Unsqueeze", [c, p + "axis1"], [f"{p}num{i}"]))
            unsq.append(f"{p}num{i}")
        nodes.append(helper.make_node("Concat", unsq, [p + "numeric"], axis=1))
        medians = np.array([[pre.medians_[c] for c in pre.numeric_columns_]], dtype=np.float64)
        inits.append(numpy_helper.from_array(medians, p + "medians"))
        nodes.append(helper.make_node("IsNaN", [p + "numeric"], [p + "isnan"]))
        nodes.append(helper.make_node("Where", [p + "isnan", p + "medians", p + "numeric"], [p + "imputed"]))
        blocks.append(p + "imputed")
    for j, (c, cats) in enumerate(pre.categories_.items()):
        keys = list(cats)
        values = list(range(len(cats)))
        if MISSING_CATEGORY in cats and "" not in cats:  # an empty string is how a missing value arrives
            keys.append("")
            values.append(cats.index(MISSING_CATEGORY))
        inputs.append(helper.make_tensor_value_info(c, TensorProto.STRING, ["batch"]))
        nodes.append(
            helper.make_node(
                "LabelEncoder", [c], [f"{p}idx{j}"], domain="ai.onnx.ml",
                keys_strings=keys, values_int64s=values, default_int64=len(cats),  # unseen -> __other__
            )
        )
        # one-hot as Equal(index, 0..len(cats)) -> double (OneHot has no float64 kernel in onnxruntime)
        inits.append(numpy_helper.from_array(np.arange(len(cats) + 1, dtype=np.int64)[None, :], f"{p}range{j}"))
        nodes.append(helper.make_node("Unsqueeze", [f"{p}idx{j}", p + "axis1"], [f"{p}idx2d{j}"]))
        nodes.append(helper.make_node("Equal", [f"{p}idx2d{j}", f"{p}range{j}"], [f"{p}eq{j}"]))
        nodes.append(helper.make_node("Cast", [f"{p}eq{j}"], [f"{p}onehot{j}"], to=TensorProto.DOUBLE))
        blocks.append(f"{p}onehot{j}")
    features = _PREFIX + "features"
    if len(blocks) == 1:
        nodes.append(helper.make_node("Identity", blocks, [features]))
    else:
        nodes.append(helper.make_node("Concat", blocks, [features], axis=1))
    # outputs back to their plain names
    for name in OUTPUTS:
        nodes_out = helper.make_node("Identity", [_PREFIX + name], [name])
        graph.node.append(nodes_out)
    outputs = []
    for out in graph.output:
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(out)
        vi.name = out.name[len(_PREFIX):]
        outputs.append(vi)
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.input[:]
    graph.input.extend(inputs)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    graph.initializer.extend(inits)
    if not any(o.domain == "ai.onnx.ml" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    return model


def export_onnx(
    est,
    path: str | os.PathLike,
    *,
    preprocessor=None,
    opset: int = ONNX_OPSET,
    overwrite: bool = False,
    routed: bool = True,
    metadata: dict[str, Any] | None = None,
    feature_names: list[str] | None = None,
) -> Path:
    """Write the scorer of a fitted SwiftHydra as an ONNX file (atomically).

    Parameters
    ----------
    est : SwiftHydra
        A fitted estimator.
    path : path
        The ``.onnx`` file to write.
    preprocessor : TablePreprocessor, optional
        Put this preprocessing in the graph; the inputs are then the table's columns by name.
        Without it the graph takes ``features``, the preprocessed float64 matrix.
    opset : int
        ONNX opset of the graph.
    overwrite : bool
        Replace an existing file.
    metadata : dict, optional
        More ``metadata_props`` (string values) to store in the file.
    feature_names : list of str, optional
        Names of the features, stored in the metadata (without ``preprocessor``).
    routed : bool
        MoME: each expert runs only on its rows (the default). ``False`` writes the older graph that
        runs every expert on every row (same scores, ``K`` times the arithmetic; for comparisons).

    Returns
    -------
    pathlib.Path
    """
    onnx = _require("onnx")
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise InvalidInputError(f"{path} already exists: choose another path or pass --force.")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory: give the path of the .onnx file to write.")
    if preprocessor is not None:
        _check_column_names(preprocessor)
    model = _torch_graph(est, opset, routed=routed)
    from swifthydra import __version__

    detector = est.mome_ if est.mome_ is not None else est.detector_
    if est.mome_ is not None:
        how = ("each row sent to its top-k experts only" if routed
               else "every expert evaluated, the routed one(s) kept")
        scorer = f"MoME with {int(est.mome_.n_experts_)} experts ({how})"
    else:
        scorer = "MambaDetector (large)"
    props = {
        "swifthydra.version": __version__,
        "swifthydra.threshold": repr(float(est.threshold_)),
        "swifthydra.contamination": repr(float(est.contamination)),
        "swifthydra.scorer": scorer,
        "swifthydra.outputs": "score: float64 logit (higher = more anomalous); is_anomaly: score > threshold; "
        "probability: 1 / (1 + exp(-clip(score, -60, 60)))",
        "swifthydra.detector_class": type(detector).__name__,
    }
    if preprocessor is not None:
        model = _with_preprocessing(model, preprocessor)
        props["swifthydra.inputs"] = json.dumps(
            {
                "kind": "columns",
                "numeric": list(preprocessor.numeric_columns_),
                "categorical": {c: list(v) for c, v in preprocessor.categories_.items()},
                "numeric_missing": "NaN, imputed with the training median",
                "categorical_missing": "'' or '__missing__'",
            }
        )
    else:
        props["swifthydra.inputs"] = json.dumps(
            {"kind": "features", "n_features": int(est.n_features_in_), "feature_names": feature_names}
        )
    for k, v in (metadata or {}).items():
        props[str(k)] = str(v)
    onnx.helper.set_model_props(model, props)
    model.doc_string = (__doc__ or "").split("\n\n")[0]
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise SwiftHydraError(f"the exported ONNX graph does not validate: {str(exc).splitlines()[0]}") from None
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
    except OSError as exc:
        raise InvalidInputError(f"cannot write into {parent} ({exc.strerror}).") from None
    try:
        onnx.save_model(model, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def onnx_inputs(preprocessor, df) -> dict[str, np.ndarray]:
    """The input feed of a graph exported with ``preprocessor``, from a DataFrame of the table.

    Numeric columns become float64 (missing -> NaN), categorical ones strings (missing ->
    ``"__missing__"``). Columns are matched by name, with the same error as the command line.
    """
    import pandas as pd

    from swifthydra.tabular.table import MISSING_CATEGORY

    preprocessor.check_columns(df.columns)
    feed = {}
    for c in preprocessor.numeric_columns_:
        col = df[c]
        values = pd.to_numeric(col, errors="coerce")
        bad = values.isna() & col.notna()
        if bad.any():
            raise InvalidInputError(
                f"column {c!r} holds non-numeric values (e.g. {col[bad].iloc[0]!r}) but was numeric in training."
            )
        feed[c] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    for c in preprocessor.categories_:
        feed[c] = df[c].astype("string").fillna(MISSING_CATEGORY).to_numpy(dtype=object)
    return feed


def synthetic_frame(preprocessor, est, n: int, seed: int = 0):
    """Random rows in the table's own columns, around the training data (to check an export):
    numeric columns from the training mean and spread (a few missing), categorical ones from the
    training categories plus an unseen value and missing values."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = {}
    for i, c in enumerate(preprocessor.numeric_columns_):
        col = est.center_[i] + est.scale_[i] * rng.normal(scale=1.5, size=n)
        col[rng.random(n) < 0.05] = np.nan
        data[c] = col
    for c, cats in preprocessor.categories_.items():
        choices = np.array([*cats, "__never_seen__"], dtype=object)
        col = choices[rng.integers(0, len(choices), n)]
        col[rng.random(n) < 0.05] = None
        data[c] = pd.array(col, dtype="string")
    return pd.DataFrame(data)


def check_export(path, est, preprocessor=None, n: int = 256, seed: int = 0) -> float:
    """Largest ``|score_onnx - score_pytorch|`` on ``n`` synthetic rows (needs onnxruntime).

    Also checks that ``is_anomaly`` and ``probability`` agree (raises when they do not)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if preprocessor is not None:
        df = synthetic_frame(preprocessor, est, n, seed)
        X = preprocessor.transform(df)
        feed = onnx_inputs(preprocessor, df)
    else:
        rng = np.random.default_rng(seed)
        X = est.center_ + est.scale_ * rng.normal(scale=1.5, size=(n, int(est.n_features_in_)))
        feed = {"features": X}
    score, is_anomaly, probability = session.run(list(OUTPUTS), feed)
    ref = est.decision_function(X)
    diff = float(np.max(np.abs(score - ref))) if n else 0.0
    same_side = (is_anomaly == (ref > est.threshold_)) | (np.abs(ref - est.threshold_) < 1e-4)
    if not same_side.all():
        raise SwiftHydraError("the ONNX graph's is_anomaly disagrees with PyTorch's: please report this.")
    ref_p = 1.0 / (1.0 + np.exp(-np.clip(ref, -60, 60)))
    if n and float(np.max(np.abs(probability - ref_p))) > 1e-4:
        raise SwiftHydraError("the ONNX graph's probability disagrees with PyTorch's: please report this.")
    return diff
