"""Imported once by the fork server (engines.bench.child) so that every forked child starts with
the heavy modules already loaded: numpy, torch, ONNX Runtime, onnx and the engine's own.

A module that is not installed is skipped (a sweep on ONNX Runtime alone needs no torch). Only
imports happen here: no thread pool may start before the fork (a forked OpenMP pool hangs), so
nothing is run, and no device is touched.
"""

from __future__ import annotations

import importlib
import os

for _key, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("TOKENIZERS_PARALLELISM", "false"),
                     ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
    os.environ.setdefault(_key, _value)

PRELOADED: list[str] = []
for _name in ("numpy", "psutil", "onnxruntime", "onnx", "torch", "transformers", "engines.bench.worker",
              "engines.plugins"):
    try:
        importlib.import_module(_name)
        PRELOADED.append(_name)
    except Exception:  # noqa: BLE001, S110 - a missing or broken optional package: its variants say so later
        pass
try:
    from engines.plugins import load_all

    load_all()  # the registries (methods, passes, runtimes) the worker looks names up in
except Exception:  # noqa: BLE001, S110 - the worker loads the registries itself when it needs them
    pass
