"""qbench from Python: sweep a model, read results, get a recommendation, export a variant.

    from engines import api
    s = api.sweep("digits-mlp", methods=[api.Method.FP32, "dynamic-int8"], min_time=0.05)
    print(api.results(run_id=s.run_id).to_pandas())
    print(api.recommend("digits-mlp")["reasons"][0])

The command line calls these same functions (``qbench run`` builds its request with
:func:`prepare`, ``qbench results`` reads through :func:`results`, ``qbench recommend`` through
:func:`recommend`), so a script and the CLI see the same sweeps and the same analysis rules
(:mod:`engines.analysis.rules`). Names of methods, runtimes and hardware targets are typed
(:class:`Method`, :class:`Runtime`, :class:`Target`) so that an editor completes them; plain
strings work everywhere too. Importing this module is light: each function imports what it
needs (a sweep's quantization and timing run in child processes, never here).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.schema import Result

__all__ = ["ApiError", "Method", "Prepared", "ResultSet", "Runtime", "Sweep", "Target", "export", "prepare",
           "recommend", "results", "sweep"]


class ApiError(ValueError):
    """Arguments qbench cannot act on (an unknown model, method, runtime, device or setting, no
    results to judge): the message says why and what is valid."""


class Method(str, enum.Enum):
    """The built-in quantization methods (``qbench methods`` describes each; a plugin's methods are
    passed by name)."""

    FP32 = "fp32"  # the float reference
    FP16 = "fp16"
    BF16 = "bf16"  # torch through oneDNN (AVX512_BF16, AMX)
    FUSE = "fuse"  # ONNX Runtime's transformer fusions (chains before the ONNX quantizers: "fuse+dynamic-int8")
    WEIGHT_INT8 = "weight-int8"
    DYNAMIC_INT8 = "dynamic-int8"
    STATIC_INT8 = "static-int8"
    INT4 = "int4"
    FP4 = "fp4"
    PALETTIZE = "palettize"
    NF4 = "nf4"
    BNB_INT8 = "bnb-int8"
    QAT_INT8 = "qat-int8"
    QAT_INT4 = "qat-int4"
    MIXED = "mixed"
    AUTO = "auto"  # each target's strategies (engines.devices.strategies)


class Runtime(str, enum.Enum):
    """The built-in runtimes."""

    ONNXRUNTIME = "onnxruntime"
    TORCH = "torch"
    MLX = "mlx"
    COREML = "coreml"
    LLAMACPP = "llama.cpp"


class Target(str, enum.Enum):
    """Hardware targets: where a variant runs."""

    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"  # Apple GPU through Metal
    GPU = "gpu"  # Core ML's GPU compute unit
    ANE = "ane"  # Apple's Neural Engine (Core ML)
    ALL = "auto"  # every target present on this machine that a chosen runtime serves


def _names(values: str | enum.Enum | Iterable[str | enum.Enum]) -> tuple[str, ...]:
    """Typed names or strings (one, or several) as the strings the engines take."""
    if isinstance(values, (str, enum.Enum)):
        values = [values]
    out = []
    for v in values:
        text = v.value if isinstance(v, enum.Enum) else str(v)
        out.append("auto" if text == "all" else text)
    return tuple(out)


# --- results ----------------------------------------------------------------------------------------


class ResultSet(Sequence[Result]):
    """Typed results (:class:`engines.core.schema.Result`: the fields of ``--json``), in order."""

    def __init__(self, items: Iterable[Result | dict[str, Any]]):
        self._items = [r if isinstance(r, Result) else Result.from_dict(r) for r in items]

    def __getitem__(self, index):  # type: ignore[override]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"ResultSet({len(self)} results)"

    def to_dicts(self) -> list[dict[str, Any]]:
        """The ``--json`` shape (non-finite floats as None)."""
        from engines.core.schema import public_json

        return public_json([r.to_dict() for r in self._items])

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dicts(), indent=indent)

    def to_pandas(self):
        """One row per result; nested figures flattened (``latency_ms.p50``, ``agreement.top1``…).

        pandas is not one of qbench's own dependencies: it is imported here, on first use
        (``uv pip install pandas`` where it is missing)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is present where the tests run
            raise ImportError("ResultSet.to_pandas needs pandas: install it with `uv pip install pandas`") from exc
        keep = ("rounds", "recipe", "memory", "runtime_info", "passes", "notes", "flags")
        rows = [{k: v for k, v in d.items() if k not in keep} for d in self.to_dicts()]
        frame = pd.json_normalize(rows, max_level=1)
        front = [c for c in ("id", "run_id", "model", "label", "runtime", "device", "batch_size", "status",
                             "latency_ms.p50", "size_mb", "accuracy", "agreement.top1") if c in frame.columns]
        return frame[front + [c for c in frame.columns if c not in front]]


@dataclass
class Sweep:
    """A finished (or interrupted) sweep: its run id, how it ended, its results (and, for
    ``methods=["auto"]``, the search's report: ``best``, ``runners_up`` with why each lost, ``runs``)."""

    run_id: str
    status: str  # finished | interrupted | failed
    results: ResultSet
    db: Path | None = None
    auto: dict[str, Any] | None = None

    def to_pandas(self):
        return self.results.to_pandas()


@dataclass
class Prepared:
    """A sweep request built from names, and the strategies ``auto`` chose (each target's)."""

    request: Any  # engines.bench.request.SweepRequest
    strategies: list[Any] = field(default_factory=list)
    choose_device: bool = False  # several targets (or all): the best one is worth naming
    explicit: list[str] = field(default_factory=list)  # the methods named besides auto

    @property
    def auto(self) -> bool:
        """``auto`` was asked for: a search (engines.bench.autosearch) rather than one sweep."""
        return bool(self.strategies)

    def search(self, run_sweep: Callable[[Any, Any], tuple[str, str, list[dict[str, Any]]]], *,
               budget_min: float | None = None, finalists: int = 3, say: Callable[[str], None] = lambda _: None,
               cancel: Any = None) -> dict[str, Any]:
        """Screen auto's candidates, measure the finalists (engines.bench.autosearch.search)."""
        from engines.bench.autosearch import search

        candidates = [s.spec for s in self.strategies]
        return search(self.request, self.explicit, candidates, run_sweep, finalists=finalists, say=say,
                      budget_s=budget_min * 60 if budget_min else None, cancel=cancel)


SETTINGS = ("min_time", "min_reps", "repeat", "threads", "timeout", "memory_limit_mb", "method_settings",
            "runtime_settings", "seq_len", "allow_pickle", "prompt_tokens", "new_tokens", "images")


def prepare(model: str, *, methods, runtimes=("onnxruntime",), devices=("cpu",), batch_sizes=(1,),
            **settings: Any) -> Prepared:
    """The sweep request for these names (parsed and checked here, once). ``settings``: ``min_time``
    (s, default 1), ``min_reps`` (30), ``repeat`` (timing rounds, 3), ``threads``, ``timeout`` (s per
    variant, 900), ``memory_limit_mb``, ``method_settings`` ({"int4": {"group_size": 128}}),
    ``runtime_settings`` ({"onnxruntime": {...}}) and model options (``seq_len``, ``allow_pickle``,
    ``prompt_tokens``, ``new_tokens``, ``images``)."""
    from engines import catalog
    from engines.bench.measure import MeasureSettings
    from engines.bench.request import SweepRequest
    from engines.core.config import config_from_dict
    from engines.devices import device_names
    from engines.devices.strategies import expand_devices, expand_methods
    from engines.methods.recipe import parse_recipes
    from engines.models import resolve_model

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ApiError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
    methods, runtimes, devices = _names(methods), _names(runtimes), _names(devices)
    batch_sizes = (batch_sizes,) if isinstance(batch_sizes, int) else tuple(int(b) for b in batch_sizes)
    if not model or not methods:
        raise ApiError("a sweep needs a model and at least one method")
    options = {k: settings[k] for k in ("seq_len", "allow_pickle", "prompt_tokens", "new_tokens", "images")
               if settings.get(k) is not None}
    try:
        spec = resolve_model(model, options)
    except ValueError as exc:  # not found, or a file that cannot be a model
        raise ApiError(str(exc)) from None
    bad = [n for n in runtimes if n not in catalog.RUNTIMES]
    if bad:
        raise ApiError(f"unknown runtime(s): {', '.join(bad)}; valid: {', '.join(catalog.RUNTIMES)}")
    choose = "auto" in devices or len(devices) > 1
    backends = {d for r in runtimes for d in catalog.RUNTIMES[r].devices}
    devices = tuple(expand_devices(devices, backends))
    specs, strategies = expand_methods(methods, list(devices))
    bad = [d for d in devices if d not in device_names()]
    if bad:
        raise ApiError(f"unknown device(s): {', '.join(bad)}; valid: {', '.join(device_names())}")
    method_settings = {str(getattr(k, "value", k)): dict(v) for k, v in (settings.get("method_settings") or {}).items()}
    runtime_settings = {str(getattr(k, "value", k)): dict(v)
                        for k, v in (settings.get("runtime_settings") or {}).items()}
    for name, values in method_settings.items():
        if name not in catalog.METHODS:
            raise ApiError(f"method_settings: unknown method {name!r}; valid: {', '.join(catalog.METHODS)}")
        try:
            config_from_dict(catalog.METHODS[name].config_class, values)
        except (ValueError, TypeError) as exc:
            raise ApiError(f"method_settings[{name!r}]: {exc}") from None
    min_time = float(settings.get("min_time") or 1.0)
    try:
        recipes = parse_recipes(specs, method_settings)  # text becomes recipes here, once
        measure = MeasureSettings(min_time_s=min_time, min_reps=int(settings.get("min_reps") or 30),
                                  max_time_s=max(20.0, min_time * 4), repeat=int(settings.get("repeat") or 3))
        request = SweepRequest(
            model=spec.path or spec.name, methods=recipes, runtimes=runtimes, devices=devices,
            batch_sizes=batch_sizes, configs=method_settings, runtime_configs=runtime_settings,
            threads=settings.get("threads"), timeout_s=float(settings.get("timeout") or 900.0),
            memory_limit_mb=settings.get("memory_limit_mb"), measure=measure, model_options=options)
    except ValueError as exc:
        raise ApiError(str(exc)) from None
    return Prepared(request, strategies, choose, [m for m in methods if m != "auto"])


def _store(db: str | Path | None):
    from engines.paths import default_db_path
    from engines.store import Store

    return Store(Path(db) if db else default_db_path())


def sweep(model: str, *, methods, runtimes=("onnxruntime",), devices=("cpu",), batch_sizes=(1,),
          db: str | Path | None = None, progress: Callable[[Any], None] | None = None,
          budget: float | None = None, finalists: int = 3, **settings: Any) -> Sweep:
    """Quantize and benchmark every method × runtime × target × batch size of ``model``; blocks
    until the sweep ends and returns it (stored in ``db``, default the app's database).

    ``Method.AUTO`` searches: each target's candidate recipes (and ONNX Runtime session settings)
    are screened with short runs, the ``finalists`` best are measured fully, and ``Sweep.auto``
    names the best that keeps quality and why each other lost; ``budget`` (minutes) bounds it.

    ``progress`` is called with each event of the sweep (:mod:`engines.core.events`: RunStarted,
    VariantStarted, ResultRecorded, RunFinished…). ``settings``: see :func:`prepare`. A model that
    cannot load raises :class:`engines.core.errors.ModelLoadError`; Ctrl-C ends the sweep as
    ``interrupted`` (its finished results stay stored) and is raised again."""
    from engines.bench.runner import SweepInterrupted, SweepRunner

    prepared = prepare(model, methods=methods, runtimes=runtimes, devices=devices, batch_sizes=batch_sizes,
                       **settings)
    store = _store(db)
    try:
        if prepared.auto:
            def run_one(request, cancel):
                try:
                    out = SweepRunner(store, progress, cancel=cancel, source="api").run(request)
                except SweepInterrupted as exc:  # the budget's stop (or Ctrl-C): what finished is kept
                    return str(exc), "interrupted", store.results(str(exc))
                return out.run_id, out.status, out.results

            try:
                found = prepared.search(run_one, budget_min=budget, finalists=finalists)
            except SweepInterrupted as exc:
                return Sweep(str(exc), "interrupted", ResultSet(store.results(str(exc))), store.path)
            report, results = found["report"], found["results"]
            final = [r for r in report["runs"] if r["phase"] == "finals"] or report["runs"][-1:]
            return Sweep(final[0]["run_id"], final[0]["status"], ResultSet(results), store.path, report)
        runner = SweepRunner(store, progress, source="api")
        try:
            outcome = runner.run(prepared.request)
        except SweepInterrupted as exc:
            return Sweep(str(exc), "interrupted", ResultSet(store.results(str(exc))), store.path)
        return Sweep(outcome.run_id, outcome.status, ResultSet(outcome.results), store.path)
    finally:
        store.close()


FILTERS = ("model", "method", "label", "runtime", "device", "status", "run_id", "host", "since", "text")


def query_results(store: Any, *, latest: bool = False, limit: int | None = None, newest_first: bool = False,
                  **filters: Any) -> list[dict[str, Any]]:
    """The stored results these filters keep, as dicts (what :func:`results` and ``qbench results``
    read). ``latest``: the newest sweep's run only (an export's validation is never it)."""
    from engines.store.query import ResultQuery

    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ApiError(f"unknown filter(s) {', '.join(unknown)}; valid: {', '.join(FILTERS)}, latest, limit")
    filters = {k: getattr(v, "value", v) for k, v in filters.items() if v is not None}
    if filters.get("run_id") is not None and store.get_run(filters["run_id"]) is None:
        raise ApiError(f"no run {filters['run_id']!r} in {store.path}; see `qbench runs`")
    if latest and filters.get("run_id") is None:
        filters["run_id"] = store.latest_run_id()
    query = ResultQuery(**filters, sort="id", reverse=newest_first)
    return store.query_results(query, limit=limit)


def results(db: str | Path | None = None, *, latest: bool = False, limit: int | None = None,
            **filters: Any) -> ResultSet:
    """Stored results, oldest first: ``model``, ``method``, ``label``, ``runtime``, ``device``,
    ``status``, ``run_id``, ``host``, ``since`` (ISO time), ``text`` (words to match), ``latest``
    (the newest sweep only), ``limit`` (the newest N)."""
    store = _store(db)
    try:
        rows = query_results(store, latest=latest, limit=limit, newest_first=limit is not None, **filters)
    finally:
        store.close()
    return ResultSet(reversed(rows) if limit is not None else rows)


def recommend(model: str, *, objective: str = "latency", device: str | Target | None = None,
              run_id: str | None = None, max_accuracy_drop: float | None = None,
              min_agreement: float | None = None, db: str | Path | None = None, store: Any = None,
              profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """What to ship for ``model`` (:func:`engines.analysis.recommend.recommend`): ``{"best",
    "runners_up", "frontier", "reasons", "rejected", "pool", ...}``. The pool is the model's sweeps
    (or one run's, with ``run_id``); export validations are left out. ``profile``: this machine's
    roofline (:func:`engines.analysis.roofline.ensure`), to diagnose the variants that lose."""
    from engines.analysis.insights import from_store
    from engines.analysis.recommend import RecommendationError
    from engines.analysis.recommend import recommend as judge

    own = store is None
    store = _store(db) if own else store
    try:
        if run_id and store.get_run(run_id) is None:
            raise ApiError(f"no run {run_id!r} in {store.path}; see `qbench runs`")
        found, facts = from_store(store, models=[model], run_id=run_id)
        found = [r for r in found if r["model"] == model]
        if not found:
            known = ", ".join(store.distinct_values("model")) or "none yet"
            raise ApiError(f"no stored results for model {model!r} (models with results: {known})")
        device = getattr(device, "value", device)
        if device and device not in {r["device"] for r in found}:
            raise ApiError(f"{model} has no results on device {device!r}; measured on: "
                           f"{', '.join(sorted({r['device'] for r in found}))}")
        try:
            rec = judge(found, objective, device=device, max_accuracy_drop=max_accuracy_drop,
                        min_agreement=min_agreement, facts=facts.get(model), profile=profile)
        except RecommendationError as exc:
            raise ApiError(str(exc)) from None
        rec["pool"] = f"run {run_id}" if run_id else f"the sweeps of {model} (newest result per variant)"
        return rec
    finally:
        if own:
            store.close()


def export(result_id: int | None = None, fmt: str = "onnx", out_dir: str | Path | None = None, *,
           run_id: str | None = None, best: str | None = None, db: str | Path | None = None,
           validate: bool = True, recipe: str | None = None, progress: Callable[[str], None] | None = None
           ) -> dict[str, Any]:
    """Export a stored variant to ``fmt`` (onnx, tflite, coreml, mlx) and validate it in that
    format's runtime; returns the report (also written to ``out_dir/qbench.json``). Name the result
    by ``result_id``, or by ``run_id`` (``"latest"``: the newest sweep) with ``best`` = latency,
    size or accuracy (:func:`engines.export.pick_best`)."""
    from engines.export import ExportError, export_result, missing_extra, pick_best

    store = _store(db)
    try:
        if result_id is None:
            if not run_id or not best:
                raise ApiError("name a result: result_id, or run_id with best='latency'|'size'|'accuracy'")
            rid = store.latest_run_id() if run_id == "latest" else run_id
            if rid is None or store.get_run(rid) is None:
                raise ApiError(f"no run {run_id!r} in {store.path}")
            chosen = pick_best(store.results(rid), best)
            if chosen is None:
                raise ApiError(f"run {rid} has no ok result to export")
            result_id = int(chosen["id"])
        path = store.path
    finally:
        store.close()
    line = missing_extra(fmt)
    if line:
        raise ApiError(line)
    try:
        return export_result(path, int(result_id), fmt, Path(out_dir or f"qbench-export-{result_id}-{fmt}"),
                             validate=validate, recipe=recipe, progress=progress)
    except ExportError as exc:
        raise ApiError(str(exc)) from None
