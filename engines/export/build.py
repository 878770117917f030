"""What the targets' writers share: run the planned passes, reuse the file a result measured, copy
and save files. Heavy callers only (imports happen inside the functions)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def apply_planned(model, planned, work: Path, runtime: str):
    """The planned chain of registered passes applied to the model: (artifact, pass names)."""
    from engines.bench.build import apply_passes
    from engines.passes import PassContext

    ctx = PassContext(model, work, runtime, "cpu", 1)
    return apply_passes(model, [p.to_dict() for p in planned.passes], ctx)


def measured_file(source: dict[str, Any], recipe, runtime: str, *, folder: bool = False) -> Path | None:
    """The file (or package folder) the result measured, when it ran on ``runtime`` and is still on disk."""
    path = Path(source["artifact"]) if source.get("artifact") else None
    if source["runtime"] != runtime or recipe.id != source.get("recipe_id") or path is None:
        return None
    return path if (path.is_dir() if folder else path.is_file()) else None


def source_file(source: dict[str, Any], recipe, model, planned, work: Path, runtime: str,
                title: str) -> tuple[Path, list[str], list[str]]:
    """The file to export: the one the result measured when it is still on disk, else rebuilt with
    ``runtime``'s passes (and said so when the source variant ran elsewhere). (path, passes, notes)"""
    measured = measured_file(source, recipe, runtime)
    if measured is not None:
        return measured, list(source.get("passes") or []), [f"the file result {source['id']} measured ({measured.name})"]
    artifact, passes = apply_planned(model, planned, work, runtime)
    notes = list(artifact.notes)
    if source["runtime"] != runtime:
        notes.append(f"rebuilt with {title}'s passes ({' → '.join(passes)}); the source variant ran on "
                     f"{source['runtime']}")
    return artifact.path, passes, notes


def save_onnx(proto, target: Path) -> None:
    """An ONNX model written at ``target`` (weights beside it past protobuf's 2 GB cap)."""
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    data = target.with_name(target.name + ".data")
    if data.exists():
        data.unlink()
    if proto.ByteSize() > 1_800_000_000:
        onnx.save(proto, str(target), save_as_external_data=True, location=data.name)
    else:
        onnx.save(proto, str(target))


def copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)
