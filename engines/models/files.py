"""Models given by path: ONNX files, torch ExportedProgram (.pt2), TorchScript, safetensors with
a config, Hugging Face directories, and (only when the user allows it) pickled checkpoints.

:func:`spec_for_path` runs in the parent (CLI, app) and imports neither torch nor onnx: it
recognises the format from the file's first bytes and its archive listing, and catches what is
cheap to catch there (a truncated safetensors or ONNX file, a pickle without ``--allow-pickle``),
so that bad input is a one-line error before any child process starts. The ``load_*`` functions
run in the child that measures a variant.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.models import ModelSpec
from engines.models.hub import ModelFileError, cache_repo_name, hf_directory_spec, safetensors_header

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
SUPPORTED = (".onnx, .pt2 (torch.export), TorchScript (.pt/.pth), .safetensors with a config.json, "
             "a Hugging Face directory; pickled checkpoints with --allow-pickle")
DEFAULT_SEQ = 128
EVAL_ROWS = 64
EVAL_BUDGET_BYTES = 64 * 2**20  # generated inputs are kept small enough to hold twice in memory


if TYPE_CHECKING:
    import numpy as np


class PickleRefused(ModelFileError):
    """A pickled checkpoint and no ``--allow-pickle``."""


def pickle_refusal(path: Path | str) -> PickleRefused:
    return PickleRefused(
        f"refusing to load {path}: it is a pickle, and loading a pickle runs any code stored in "
        "it. Pass --allow-pickle only if you trust where the file came from, or convert it to "
        "safetensors, torch.export (.pt2) or ONNX"
    )


# --- recognising a file (parent process: no heavy imports) -------------------------------------


def _read_varint(fh) -> int | None:
    shift, value = 0, 0
    while True:
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def check_onnx_file(path: Path) -> None:
    """Walk the top level of the ONNX protobuf: every field must fit in the file, and the graph
    and opset fields must be there. A cut-off file fails here without parsing the graph."""
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path} is empty")
    seen: set[int] = set()
    try:
        with open(path, "rb") as fh:
            while fh.tell() < size:
                key = _read_varint(fh)
                if key is None:
                    break
                field, wire = key >> 3, key & 7
                if field == 0 or wire in (3, 4, 6, 7):
                    raise ValueError(f"bad field key at byte {fh.tell()}")
                if wire == 0:
                    if _read_varint(fh) is None:
                        raise EOFError
                elif wire == 1:
                    fh.seek(8, 1)
                elif wire == 5:
                    fh.seek(4, 1)
                else:  # length-delimited
                    length = _read_varint(fh)
                    if length is None:
                        raise EOFError
                    fh.seek(length, 1)
                if fh.tell() > size:
                    raise EOFError
                seen.add(field)
    except EOFError:
        raise ModelFileError(
            f"{path} is truncated: an ONNX field runs past the end of the file ({size:,} bytes); "
            "an interrupted download or copy?"
        ) from None
    except ValueError as exc:
        raise ModelFileError(f"{path} is not an ONNX model ({exc})") from None
    if 7 not in seen:
        raise ModelFileError(f"{path} is not an ONNX model, or is truncated: it has no graph")
    if 8 not in seen:
        raise ModelFileError(f"{path} is truncated or incomplete: it has a graph but no opset_import")


def _zip_names(path: Path) -> list[str] | None:
    """Member names of a zip archive; None when the file is not one."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path} is a damaged archive ({exc})") from None


def sniff_torch_file(path: Path) -> str:
    """``exported-program``, ``torchscript`` or ``pickle`` (torch.save / any other pickle)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    names = _zip_names(path)
    if names is None:
        if head[:2] == b"PK":
            raise ModelFileError(f"{path} is a truncated or damaged zip archive (torch files are zips)")
        if head[:1] == b"\x80" or path.suffix.lower() in PICKLE_SUFFIXES:
            return "pickle"  # legacy torch.save or a plain pickle
        raise ModelFileError(f"{path}: not a model format qbench knows. Supported: {SUPPORTED}")
    if any(n.endswith("archive_format") for n in names) or any("/models/" in n and n.endswith(".json")
                                                              for n in names):
        return "exported-program"
    if any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "pickle"
    raise ModelFileError(f"{path} is a zip archive but not a torch model file")


def spec_for_path(path: Path, options: dict[str, Any] | None = None) -> ModelSpec:
    """Describe the model at ``path`` (raises :class:`ModelFileError` with the reason)."""
    options = dict(options or {})
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelFileError(
                f"{path} is a directory without config.json: not a Hugging Face model directory. "
                f"Supported: {SUPPORTED}"
            )
        spec = hf_directory_spec(path, name=cache_repo_name(path), source="hf-dir")
        if spec.extra.get("needs_pickle") and not options.get("allow_pickle"):
            raise pickle_refusal(f"{path} (pytorch_model.bin)")
        return _with(spec, options, path=str(path))
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file or directory")
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(8)
    if suffix == ".safetensors":
        safetensors_header(path)  # truncation is caught here
        if not (path.parent / "config.json").exists():
            raise ModelFileError(
                f"{path} holds weights only; qbench needs the architecture too: put the model's "
                "config.json beside it (a Hugging Face directory) and pass the directory or the file"
            )
        spec = hf_directory_spec(path.parent, name=cache_repo_name(path.parent) or path.parent.name,
                                 source="hf-dir")
        if spec.extra.get("needs_pickle") and not options.get("allow_pickle"):
            raise pickle_refusal(f"{path.parent} (pytorch_model.bin)")
        return _with(spec, options, path=str(path.parent))
    if suffix == ".onnx" or (head[:1] == b"\x08" and suffix not in PICKLE_SUFFIXES + (".pt2",)):
        check_onnx_file(path)
        return _with(ModelSpec(path.stem, "generic", "file", f"ONNX model {path.name}",
                               "engines.models.files:load_onnx", path=str(path),
                               extra={"format": "onnx"}), options)
    kind = sniff_torch_file(path)
    if kind == "exported-program":
        return _with(ModelSpec(path.stem, "generic", "file", f"torch ExportedProgram {path.name}",
                               "engines.models.files:load_exported_program", path=str(path),
                               extra={"format": "pt2"}), options)
    if kind == "torchscript":
        return _with(ModelSpec(path.stem, "generic", "file", f"TorchScript module {path.name}",
                               "engines.models.files:load_torchscript", path=str(path),
                               extra={"format": "torchscript"}), options)
    if not options.get("allow_pickle"):
        raise pickle_refusal(path)
    return _with(ModelSpec(path.stem, "generic", "file", f"pickled torch checkpoint {path.name}",
                           "engines.models.files:load_pickle", path=str(path),
                           extra={"format": "pickle"}), options)


def _with(spec: ModelSpec, options: dict[str, Any], **changes: Any) -> ModelSpec:
    from dataclasses import replace

    extra = {**spec.extra, **{k: v for k, v in options.items() if v is not None}}
    return replace(spec, extra=extra, **changes)


# --- generated inputs -------------------------------------------------------------------------


def generate_inputs(specs: list[tuple[str, tuple, str, int | None]], rows: int, seed: int,
                    ) -> dict[str, np.ndarray]:
    """Random inputs for (name, shape without batch, numpy dtype, integer upper bound).

    Integer inputs get plausible values: masks are ones, token-type/segment ids zeros,
    position ids a range, other indices uniform below the bound found in the graph (0 if none).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape, dtype, bound in specs:
        full = (rows, *shape)
        lowered = name.lower()
        kind = np.dtype(dtype).kind
        if kind == "f":
            out[name] = rng.standard_normal(full).astype(dtype)
        elif kind == "b":
            out[name] = np.ones(full, dtype=bool) if "mask" in lowered else rng.random(full) < 0.5
        elif "mask" in lowered:
            out[name] = np.ones(full, dtype=dtype)
        elif "type" in lowered or "segment" in lowered:
            out[name] = np.zeros(full, dtype=dtype)
        elif "position" in lowered and shape:
            out[name] = np.broadcast_to(np.arange(shape[-1], dtype=dtype), full).copy()
        else:
            out[name] = rng.integers(0, max(1, bound or 1), size=full).astype(dtype)
    return out


def _rows_for(specs: list[tuple[str, tuple, str, int | None]], fixed_batch: int | None) -> int:
    import numpy as np

    row_bytes = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize for _, shape, dt, _ in specs)
    rows = int(max(1, min(EVAL_ROWS, EVAL_BUDGET_BYTES // max(1, row_bytes))))
    if fixed_batch:
        rows = max(fixed_batch, rows - rows % fixed_batch)
    return rows


# --- ONNX ---------------------------------------------------------------------------------------

_ONNX_NP = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
            10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


def load_onnx(spec: ModelSpec):
    """An ONNX file: its declared inputs, filled with generated data; the reference is the
    file's own fp32 output (through ONNX Runtime)."""
    import numpy as np
    import onnx

    from engines.models.base import InputSpec, LoadedModel

    path = Path(spec.path or "")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelFileError(f"{path} cannot be parsed as ONNX ({type(exc).__name__}: {exc})") from None
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    seq = int(spec.extra.get("seq_len") or DEFAULT_SEQ)
    bounds = _gather_bounds(graph, initializers)
    inputs, gen_specs, fixed_batch = [], [], None
    for value in graph.input:
        if value.name in initializers:
            continue  # old exporters list weights as inputs too
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise ModelFileError(f"{path}: input {value.name!r} is not a tensor; qbench cannot generate it")
        dtype = _ONNX_NP.get(tensor.elem_type)
        if dtype is None:
            raise ModelFileError(f"{path}: input {value.name!r} has an element type qbench cannot generate")
        dims = list(tensor.shape.dim)
        shape: list[int | str] = []
        for i, dim in enumerate(dims):
            if i == 0:
                if dim.HasField("dim_value") and dim.dim_value > 0:
                    fixed_batch = fixed_batch or int(dim.dim_value)
                    shape.append("batch")  # generated rows; the batch is checked via fixed_batch
                else:
                    shape.append("batch")
            elif dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(int(dim.dim_value))
            else:
                shape.append(dim.dim_param or f"dim{i}")
        concrete = tuple(seq if isinstance(d, str) else d for d in shape[1:])
        inputs.append(InputSpec(value.name, tuple(shape), dtype))
        gen_specs.append((value.name, concrete, dtype, bounds.get(value.name)))
    if not inputs:
        raise ModelFileError(f"{path} declares no inputs")
    if not graph.output:
        raise ModelFileError(f"{path} declares no outputs")
    rows = _rows_for(gen_specs, fixed_batch)
    details = {
        "format": "onnx", "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                                       default=None),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "inputs": "generated from the declared shapes and types (seed 0); symbolic non-batch "
                  f"dimensions set to {seq}",
        "outputs": len(graph.output), "measured_output": graph.output[0].name,
    }
    if fixed_batch:
        details["fixed_batch"] = fixed_batch
    return LoadedModel(
        name=spec.name, task="generic", module=None, inputs=inputs, output_name=graph.output[0].name,
        eval_inputs=generate_inputs(gen_specs, rows, seed=0),
        calibration_inputs=generate_inputs(gen_specs, rows, seed=1),
        onnx_source=path, params=sum(int(np.prod(t.dims, dtype=np.int64)) for t in graph.initializer),
        details=details, fixed_batch=fixed_batch,
    )


def _gather_bounds(graph, initializers) -> dict[str, int]:
    """For integer graph inputs used as Gather indices into a constant table: the table's rows."""
    bounds: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) >= 2 and node.input[0] in initializers:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = initializers[node.input[0]].dims
            if dims and axis < len(dims):
                bound = int(dims[axis])
                bounds[node.input[1]] = min(bounds.get(node.input[1], bound), bound)
    return bounds


# --- torch files ------------------------------------------------------------------------------


def _first_tensor_module(module, inputs: int):
    """Wrap ``module`` so that it returns one tensor (the first of a tuple, list or dict)."""
    from engines.models.wrappers import FixedArity, first_tensor, with_arity

    class FirstTensor(FixedArity):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, *args):
            return first_tensor(self.inner(*args))

        def train(self, mode: bool = True):
            # ExportedProgram modules refuse train(); a loaded model is only ever evaluated.
            self.training = mode
            return self

    return with_arity(FirstTensor(module), inputs).eval()


def _layer_kind(module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


def infer_torch_inputs(module, seq: int) -> list[tuple[str, tuple, str, int | None]]:
    """Input candidates from the first layer with weights: Linear -> (in,), Conv2d -> (C, H, W),
    Embedding -> (seq,) token ids. Each candidate is tried; the first that runs is kept."""
    import torch

    first = None
    for sub in module.modules():
        kind = _layer_kind(sub)
        if kind in ("Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "EmbeddingBag") and hasattr(sub, "weight"):
            first = (kind, tuple(sub.weight.shape))
            break
    if first is None:
        raise ModelFileError("could not work out the model's input: it has no Linear, Conv or "
                             "Embedding layer to read it from (export it with torch.export or ONNX)")
    kind, wshape = first
    if kind == "Linear":
        candidates = [((wshape[1],), "float32", None)]
    elif kind in ("Embedding", "EmbeddingBag"):
        candidates = [((seq,), "int64", wshape[0])]
    elif kind == "Conv1d":
        candidates = [((wshape[1], n), "float32", None) for n in (seq, 64, 32, 256)]
    elif kind == "Conv2d":
        candidates = [((wshape[1], n, n), "float32", None) for n in (32, 28, 8, 64, 224, 16)]
    else:
        candidates = [((wshape[1], n, n, n), "float32", None) for n in (16, 32, 8)]
    errors = []
    for shape, dtype, bound in candidates:
        trial = generate_inputs([("input", shape, dtype, bound)], 2, seed=0)["input"]
        try:
            with torch.inference_mode():
                module(torch.from_numpy(trial))
            return [("input", shape, dtype, bound)]
        except Exception as exc:  # noqa: BLE001 - a shape the model rejects: try the next one
            errors.append(f"{shape}: {type(exc).__name__}")
    raise ModelFileError(f"could not find an input shape the model accepts (tried {'; '.join(errors)})")


def _torch_loaded(spec: ModelSpec, module, gen_specs, fixed_batch: int | None, details: dict,
                  wrap: bool = True):
    from engines.models.base import InputSpec, LoadedModel

    rows = _rows_for(gen_specs, fixed_batch)
    wrapped = _first_tensor_module(module, len(gen_specs)) if wrap else module
    return LoadedModel(
        name=spec.name, task="generic", module=wrapped,
        inputs=[InputSpec(n, ("batch", *shape), dt) for n, shape, dt, _ in gen_specs],
        output_name="output",
        eval_inputs=generate_inputs(gen_specs, rows, seed=0),
        calibration_inputs=generate_inputs(gen_specs, rows, seed=1),
        params=sum(p.numel() for p in module.parameters()), details=details, fixed_batch=fixed_batch,
    )


def _via_onnx_cache(spec: ModelSpec, build):
    """ONNX Runtime variants after the first one reuse the exported graph (no torch import)."""
    from engines.models import onnx_cache

    if not onnx_cache.wants_onnx(spec.extra):
        return build()
    path = Path(spec.path or "")
    parts = {"loader": spec.loader, "file": onnx_cache.file_stamp([path]), "seq_len": spec.extra.get("seq_len")}
    return onnx_cache.onnx_model(spec.name, parts, build)


def load_torchscript(spec: ModelSpec):
    return _via_onnx_cache(spec, lambda: _load_torchscript(spec))


def load_exported_program(spec: ModelSpec):
    return _via_onnx_cache(spec, lambda: _load_exported_program(spec))


def load_pickle(spec: ModelSpec):
    """A pickled ``nn.Module`` (torch.save(model)); only with the user's explicit permission."""
    if not spec.extra.get("allow_pickle"):
        raise pickle_refusal(spec.path)  # also refused here, whoever started the job
    return _via_onnx_cache(spec, lambda: _load_pickle(spec))


def _load_torchscript(spec: ModelSpec):
    import torch

    path = Path(spec.path or "")
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - any failure to load is the file's problem, reported
        raise ModelFileError(f"{path} cannot be loaded as TorchScript ({type(exc).__name__}: {exc})") from None
    gen_specs = infer_torch_inputs(module, int(spec.extra.get("seq_len") or DEFAULT_SEQ))
    details = {"format": "torchscript", "inputs": "generated; shape read from the first layer (seed 0)"}
    # A Python wrapper around a loaded ScriptModule cannot be traced for ONNX export, so the
    # module is used as it is when it already returns one tensor.
    trial = generate_inputs(gen_specs, 2, seed=0)
    with torch.inference_mode():
        out = module(*(torch.from_numpy(trial[name]) for name, *_ in gen_specs))
    return _torch_loaded(spec, module, gen_specs, None, details, wrap=not isinstance(out, torch.Tensor))


def _load_exported_program(spec: ModelSpec):
    import torch

    path = Path(spec.path or "")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to load is the file's problem, reported
        raise ModelFileError(f"{path} cannot be loaded as a torch ExportedProgram "
                             f"({type(exc).__name__}: {exc})") from None
    user_inputs = set(program.graph_signature.user_inputs)
    seq = int(spec.extra.get("seq_len") or DEFAULT_SEQ)
    gen_specs, fixed_batch = [], None
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise ModelFileError(f"{path}: input {node.name!r} is not a tensor; qbench cannot generate it")
        dims = list(val.shape)
        if dims and isinstance(dims[0], int):
            fixed_batch = fixed_batch or int(dims[0])
        shape = tuple(int(d) if isinstance(d, int) else seq for d in dims[1:])
        dtype = str(val.dtype).replace("torch.", "")
        gen_specs.append((node.name, shape, dtype, None))
    if not gen_specs:
        raise ModelFileError(f"{path}: the program takes no tensor inputs")
    details = {"format": "pt2", "inputs": "generated from the program's input shapes (seed 0)"}
    if fixed_batch:
        details["fixed_batch"] = fixed_batch
    return _torch_loaded(spec, program.module(), gen_specs, fixed_batch, details)


def _load_pickle(spec: ModelSpec):
    import torch

    path = Path(spec.path or "")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the file's problem, reported
        raise ModelFileError(f"{path} cannot be unpickled ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        modules = [v for v in obj.values() if isinstance(v, torch.nn.Module)]
        if modules:
            obj = modules[0]
    if not isinstance(obj, torch.nn.Module):
        what = "a state_dict (weights only)" if isinstance(obj, dict) else type(obj).__name__
        raise ModelFileError(
            f"{path} holds {what}, not a model: qbench needs the architecture too. Save the whole "
            "module with torch.export (.pt2), TorchScript or ONNX, or give a Hugging Face directory"
        )
    module = obj.eval()
    gen_specs = infer_torch_inputs(module, int(spec.extra.get("seq_len") or DEFAULT_SEQ))
    details = {"format": "pickle", "inputs": "generated; shape read from the first layer (seed 0)"}
    return _torch_loaded(spec, module, gen_specs, None, details)
