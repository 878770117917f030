"""Built-in models trained on scikit-learn's digits (ships with the package: works offline).

Trained once with a fixed seed and cached under ``$QBENCH_HOME/models``; every later run loads
the cached weights, so all variants of all runs measure the same network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engines.models.base import InputSpec, LoadedModel, TrainingData
from engines.paths import models_cache_dir

ARCH_VERSION = 1  # bump when an architecture or the training recipe changes
SEED = 0
TEST_FRACTION = 0.3
CALIBRATION_FRACTION = 0.1


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Pixels and labels, cached as .npz: importing scikit-learn costs each child seconds."""
    cache = models_cache_dir() / "digits-data.npz"
    if cache.exists():
        try:
            with np.load(cache) as data:
                return data["x"], data["y"]
        except (OSError, ValueError, KeyError):
            pass  # damaged cache: rebuild it below
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, cache)
    return x, y


def digits_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fixed train / calibration / test splits of the 1797 digits, pixels scaled to [0, 1]."""
    x, y = _digits_arrays()
    x = x / 16.0
    order = np.random.RandomState(SEED).permutation(len(x))
    n_test = int(len(x) * TEST_FRACTION)
    n_cal = int(len(x) * CALIBRATION_FRACTION)
    test, cal, train = order[:n_test], order[n_test : n_test + n_cal], order[n_test + n_cal :]
    return {"train": (x[train], y[train]), "calibration": (x[cal], y[cal]), "test": (x[test], y[test])}


def _build(kind: str):
    import torch.nn as nn

    if kind == "mlp":
        # Wide enough that int8 matters: ~1.1 M parameters, 4.3 MB in fp32.
        return nn.Sequential(
            nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
        )
    if kind == "cnn":
        # Convolutions dominate the work, so static int8 on conv layers shows.
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
        )
    raise ValueError(kind)


def _shape(kind: str, x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 1, 8, 8) if kind == "cnn" else x


def _train(kind: str, epochs: int):
    import torch

    torch.manual_seed(SEED)
    model = _build(kind)
    x, y = digits_splits()["train"]
    xt, yt = torch.from_numpy(_shape(kind, x)), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


def _cached_weights(name: str, kind: str, epochs: int) -> Path:
    """Train once; later calls (and concurrent child processes) reuse the file."""
    import torch

    folder = models_cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    weights, meta = folder / "weights.pt", folder / "meta.json"
    expected = {"arch_version": ARCH_VERSION, "seed": SEED, "epochs": epochs}
    if weights.exists() and meta.exists():
        try:
            if json.loads(meta.read_text())["recipe"] == expected:
                torch.load(weights, weights_only=True)  # a damaged cache is retrained, not fatal
                return weights
        except Exception:
            pass  # unreadable metadata or weights: retrain
    model = _train(kind, epochs)
    tmp = weights.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, weights)  # atomic: a reader never sees half a file
    meta.write_text(json.dumps({"recipe": expected, "model": name}, indent=2))
    return weights


def load(spec) -> LoadedModel:
    """``spec``: the model's ModelSpec (or just its name)."""
    import torch

    name = getattr(spec, "name", spec)
    kind = {"digits-mlp": "mlp", "digits-cnn": "cnn"}[name]
    epochs = 12  # enough for ~97-98 % held-out accuracy; training takes seconds on 2 cores
    model = _build(kind)
    model.load_state_dict(torch.load(_cached_weights(name, kind, epochs), weights_only=True))
    model.eval()
    splits = digits_splits()
    x_test, y_test = splits["test"]
    x_cal, y_cal = splits["calibration"]
    x_train, y_train = splits["train"]
    shape: tuple = ("batch", 1, 8, 8) if kind == "cnn" else ("batch", 64)
    return LoadedModel(
        name=name,
        task="classification",
        module=model,
        inputs=[InputSpec("input", shape, "float32")],
        output_name="logits",
        eval_inputs={"input": _shape(kind, x_test)},
        eval_labels=y_test,
        calibration_inputs={"input": _shape(kind, x_cal)},
        calibration_labels=y_cal,
        training_data=TrainingData({"input": _shape(kind, x_train)}, y_train),
        params=sum(p.numel() for p in model.parameters()),
        details={"dataset": "scikit-learn digits (8x8)", "held_out": len(x_test)},
    )
