"""What a sweep measures: the request (stored with the run) and the variants it expands into.

A variant is model × recipe × runtime × device; each is measured at every batch size. Methods
are recipes (:class:`Recipe`, parsed where the text entered: the CLI, the app, the Python API), so
one run can compare several settings of one method; ``configs`` records the per-method defaults
they were parsed with (``--set``, the app's forms) and ``runtime_configs`` the runtime-only knobs.
Stored as JSON, each recipe is the text that parses back into it with ``configs``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engines.bench.measure import MeasureSettings
from engines.core.config import config_from_dict, config_to_dict
from engines.devices import physical_cores
from engines.devices.apple import default_threads
from engines.methods.recipe import FIELD_SEPARATOR, STEP_SEPARATOR, Recipe, parse_recipes
from engines.methods.registry import find_method
from engines.passes import for_runtime
from engines.runtimes import RuntimeConfig, all_runtimes, runtime_spec


@dataclass(frozen=True)
class SweepRequest:
    """Everything needed to run (or resume) a sweep; stored with the run as JSON."""

    model: str
    methods: tuple[Recipe, ...]  # parse_recipes(["int4", "int4:group_size=128", "fp32"], configs)
    runtimes: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    batch_sizes: tuple[int, ...] = (1,)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> default settings
    runtime_configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # runtime -> settings
    threads: int | None = None  # None: the performance cores on Apple Silicon, else all physical cores
    timeout_s: float = 900.0
    memory_limit_mb: float | None = None  # None: 80 % of physical memory
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    # Passed to the model's loader (engines.models.MODEL_OPTIONS): seq_len, allow_pickle.
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.methods or not self.runtimes or not self.devices or not self.batch_sizes:
            raise ValueError("a sweep needs at least one method, runtime, device and batch size")
        text = [m for m in self.methods if not isinstance(m, Recipe)]
        if text:
            raise TypeError(f"SweepRequest.methods are recipes, not text ({text[0]!r}): parse them where they "
                            "enter (engines.methods.recipe.parse_recipes(texts, configs))")
        known = all_runtimes()
        unknown = [r for r in self.runtimes if r not in known]
        if unknown:
            raise ValueError(f"unknown runtime(s) {', '.join(unknown)}; valid: {', '.join(known)}")
        for name in self.runtime_configs:
            self.runtime_config(name)  # validates
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError("batch sizes must be positive")

    def recipes(self) -> list[Recipe]:
        """The distinct recipes, in the order given (two specs of the same settings count once)."""
        out: dict[str, Recipe] = {}
        for recipe in self.methods:
            out.setdefault(recipe.id, recipe)
        return list(out.values())

    def runtime_config(self, runtime: str) -> RuntimeConfig:
        spec = runtime_spec(runtime)
        return config_from_dict(spec.config_class, self.runtime_configs.get(runtime))

    @property
    def effective_threads(self) -> int:
        return self.threads or default_threads(physical_cores())[0]

    @property
    def threads_rule(self) -> str:
        """Why the sweep uses its thread count (recorded with each result's thread pool)."""
        return "given (--threads)" if self.threads else default_threads(physical_cores())[1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = [recipe.text(self.configs) for recipe in self.methods]
        data["measure"] = self.measure.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRequest:
        """A stored (or sent) request, or the app's set-up (plain data, fields left out take their
        defaults): its recipe texts are parsed here, with its ``configs``."""
        data = dict(data)
        data["measure"] = MeasureSettings(**(data.get("measure") or {}))
        for key in ("runtimes", "devices", "batch_sizes"):
            if key in data:
                data[key] = tuple(data[key])
        data["methods"], data["configs"], data["runtime_configs"] = _relocate_moved(
            list(data["methods"]), dict(data.get("configs") or {}), dict(data.get("runtime_configs") or {}))
        data["methods"] = parse_recipes(data["methods"], data["configs"])
        return cls(**data)


def _relocate_moved(methods: list[str], configs: dict[str, dict[str, Any]],
                    runtime_configs: dict[str, dict[str, Any]]) -> tuple[list[str], dict, dict]:
    """A request stored before a method setting moved to a runtime's config (``MethodConfig.moved``:
    ``dynamic-int8:torch_backend=torchao`` is now ``--set torch.dynamic_int8=torchao``) reads as
    the request it would be today, so its run still resumes."""
    runtime_configs = {name: dict(values) for name, values in runtime_configs.items()}

    def move(method: str, key: str, value: Any) -> bool:
        spec = find_method(method)
        moved = spec.config_class.moved if spec is not None else {}
        if key in moved:
            runtime, setting = moved[key]
            runtime_configs.setdefault(runtime, {})[setting] = value
        return key in moved

    configs = {m: {k: v for k, v in values.items() if not move(m, k, v)} for m, values in configs.items()}
    texts = []
    for text in methods:
        steps = []
        for step in text.split(STEP_SEPARATOR):
            name, *assignments = step.split(FIELD_SEPARATOR)
            kept = [a for a in assignments if not move(name.strip(), *a.partition("=")[::2])]
            steps.append(FIELD_SEPARATOR.join([name, *kept]))
        texts.append(STEP_SEPARATOR.join(steps))
    return texts, configs, runtime_configs


@dataclass(frozen=True)
class Variant:
    recipe: Recipe
    runtime: str
    device: str
    runtime_config: RuntimeConfig

    @property
    def label(self) -> str:
        return f"{self.recipe.label} · {self.runtime} · {self.device}"

    def identity(self, model: str, batch_size: int) -> dict[str, Any]:
        """The identity fields of this variant's result at one batch size (engines.core.schema)."""
        steps = self.recipe.to_list()
        return {
            "model": model, "method": self.recipe.method, "recipe_id": self.recipe.id, "label": self.recipe.label,
            "recipe": steps, "config": steps[0]["config"], "runtime": self.runtime, "device": self.device,
            "batch_size": batch_size, "runtime_config": config_to_dict(self.runtime_config),
        }


def plan_variants(request: SweepRequest) -> list[Variant]:
    """Recipes × runtimes × devices, each recipe as its runtime's passes read it (another runtime's
    pass options at their defaults: :func:`engines.passes.for_runtime`), each variant once."""
    out: dict[tuple[str, str, str], Variant] = {}
    for recipe in request.recipes():
        for runtime in request.runtimes:
            measured = for_runtime(recipe, runtime)
            for device in request.devices:
                out.setdefault((measured.id, runtime, device),
                               Variant(measured, runtime, device, request.runtime_config(runtime)))
    return list(out.values())
