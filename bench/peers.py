"""qbench against the pipelines a user could build by hand, on all-MiniLM-L6-v2, in one interleaved run.

Every variant is an ONNX file timed the same way here: ONNX Runtime called directly, one session
each, the same threads (intra-op, sequential), the same batch-1 inputs (seq 128), rounds interleaved
so that the machine's load falls on all of them alike. Quality is the cosine of each sentence
embedding to the plain fp32 graph's on qbench's held-out sentences.

* qbench: the recipes ``--methods auto`` proposes on an x86 CPU with VNNI, made by qbench's own
  passes; the best one that keeps cosine ≥ 0.99 is marked. Its torch variants (auto's static int8,
  which inductor lowers to oneDNN's int8 kernels, bf16, and torch fp32 for reference) are not ONNX
  files: they run through qbench's own torch session (``open_recipe``) in the same interleaved
  rounds, with the same threads (``torch.set_num_threads``) and the same inputs, and say so.
* hand-written ONNX Runtime: ``optimize_model`` (bert, heads/hidden given) + ``quantize_dynamic``.
* Optimum (``optimum-onnx``): ORTOptimizer O1/O2/O3, each followed by ORTQuantizer's avx512_vnni
  dynamic preset; sentence-transformers' ``export_dynamic_quantized_onnx_model`` (avx512_vnni) on
  its own ONNX export. Optimum pins transformers < 4.58 where qbench needs 5.x, so these run in a
  separate interpreter given by ``--peer-python`` (made with, e.g.,
  ``uv venv /tmp/peers && uv pip install --python /tmp/peers/bin/python "optimum-onnx[onnxruntime]"
  onnxruntime==<qbench's> torch sentence-transformers``); without it they are skipped, saying so.

Session settings: every ONNX file runs in ONNX Runtime's default session (intra-op pool spinning)
and, with ``--spinning both`` (the default above one thread), again with
``session.intra_op.allow_spinning`` 0, the setting ``--methods auto`` screens (rows marked
"· spinning off"): on a shared machine a spinning pool waits at every parallel section for the
thread a neighbour holds (MiniLM static int8, 2 threads, load 8 on 2 cores: ~80 → ~40 ms alone in
its process). At one thread there is no pool to spin. The verdict takes the fastest row of each side
whatever its session, so each side gets the better setting. Beside the p50 wall time each row shows
its p50 CPU time per call (the process's, all threads): under load the wall time is mostly waiting
for a core, while the CPU time is the work done (a spinning pool's spinning included).

Usage: ``uv run python bench/peers.py [--peer-python PATH] [--threads 2] [--rounds 12] [--calls 5]
[--spinning on|off|both]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QBENCH_RECIPES = ("dynamic-int8", "fuse", "fuse+dynamic-int8", "static-int8")
# auto's torch candidates on an x86 CPU (engines.devices.strategies), timed through qbench's torch session
QBENCH_TORCH_RECIPES = ("fp32", "static-int8", "bf16")
MIN_COSINE = 0.99

# Run in the peer interpreter: Optimum's optimizer levels and quantizer preset, sentence-transformers'
# int8 export. Prints {name: path} as JSON on its last line.
PEER_SCRIPT = r'''
import json, shutil, sys
from pathlib import Path
src, hf_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
made = {}
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer, ORTQuantizer
from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig
base = out / "optimum-fp32"
base.mkdir(parents=True, exist_ok=True)
shutil.copyfile(src, base / "model.onnx")
shutil.copyfile(hf_dir / "config.json", base / "config.json")
qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
for level in ("O1", "O2", "O3"):
    try:
        model = ORTModelForFeatureExtraction.from_pretrained(base, file_name="model.onnx")
        optimized = out / f"optimum-{level}"
        ORTOptimizer.from_pretrained(model).optimize(getattr(AutoOptimizationConfig, level)(), optimized)
        made[f"Optimum {level}"] = str(next(optimized.glob("*.onnx")))
    except Exception as exc:  # report and go on: one level failing says nothing of the others
        made[f"Optimum {level}"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        continue
    try:
        quantized = out / f"optimum-{level}-int8"
        ORTQuantizer.from_pretrained(optimized, file_name=Path(made[f"Optimum {level}"]).name).quantize(
            qconfig, quantized)
        made[f"Optimum {level} + int8 (avx512_vnni)"] = str(next(quantized.glob("*quantized*.onnx")))
    except Exception as exc:
        made[f"Optimum {level} + int8 (avx512_vnni)"] = f"failed: {type(exc).__name__}: {exc}"[:300]
try:
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model
    st_dir = out / "st"
    model = SentenceTransformer(str(hf_dir), backend="onnx", device="cpu")
    model.save_pretrained(str(st_dir))
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(st_dir))
    made["sentence-transformers int8 (avx512_vnni)"] = str(next((st_dir / "onnx").glob("*qint8*avx512_vnni*.onnx")))
except Exception as exc:
    made["sentence-transformers int8 (avx512_vnni)"] = f"failed: {type(exc).__name__}: {exc}"[:300]
print(json.dumps(made))
'''


def qbench_variants(model, workdir: Path, threads: int) -> dict[str, Path]:
    from engines import catalog
    from engines.bench.worker import apply_passes
    from engines.methods.recipe import parse_recipe
    from engines.passes import Format, PassContext, plan

    out: dict[str, Path] = {}
    for spec in QBENCH_RECIPES:
        chain = plan(parse_recipe(spec), Format.TORCH, catalog.RUNTIMES["onnxruntime"], "cpu")
        folder = workdir / spec.replace("+", "_")
        folder.mkdir(parents=True, exist_ok=True)
        artifact, _ = apply_passes(model, [p.to_dict() for p in chain.passes],
                                   PassContext(model, folder, "onnxruntime", "cpu", threads))
        out[f"qbench {spec}"] = artifact.path
    return out


class TorchVariant:
    """A qbench torch variant behind the ``run``/``get_inputs`` face the ONNX sessions show here."""

    def __init__(self, session, input_names):
        self._session, self._names = session, list(input_names)

    def get_inputs(self):
        return [type("Input", (), {"name": n}) for n in self._names]

    def run(self, _outputs, feed):
        return [self._session.run(feed)]


def qbench_torch_variants(model, workdir: Path, threads: int) -> tuple[dict[str, TorchVariant], list[str]]:
    """auto's torch recipes opened through qbench's own torch session (int8: inductor → oneDNN)."""
    from engines.bench.worker import open_recipe

    out, notes = {}, []
    for spec in QBENCH_TORCH_RECIPES:
        folder = workdir / f"torch-{spec}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            artifact, sess = open_recipe(model, spec, "torch", "cpu", threads, folder)
        except Exception as exc:  # noqa: BLE001 - say which and go on
            notes.append(f"qbench torch {spec}: {type(exc).__name__}: {exc}"[:300])
            continue
        how = artifact.facts.get("int8_kernels") or ("eager" if not artifact.facts.get("simulated") else
                                                     "eager Q/DQ simulation")
        out[f"qbench {spec} · torch ({how})"] = TorchVariant(sess, model.input_names)
    return out, notes


def hand_written(fp32: Path, workdir: Path) -> dict[str, Path]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = workdir / "hand-fused.onnx"
    optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384).save_model_to_file(str(fused))
    quantized = workdir / "hand-fused-int8.onnx"
    quantize_dynamic(str(fused), str(quantized), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": 1})
    return {"ORT by hand: optimize_model + quantize_dynamic": quantized}


def peers(python: str | None, fp32: Path, hf_dir: Path, workdir: Path) -> tuple[dict[str, Path], list[str]]:
    if not python:
        return {}, ["Optimum and sentence-transformers skipped: no --peer-python (they pin transformers < 4.58)"]
    proc = subprocess.run([python, "-c", PEER_SCRIPT, str(fp32), str(hf_dir), str(workdir / "peers")],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        return {}, [f"peer interpreter failed: {proc.stderr.strip()[-600:]}"]
    made = json.loads(proc.stdout.strip().splitlines()[-1])
    notes = [f"{k}: {v}" for k, v in made.items() if v.startswith("failed")]
    return {k: Path(v) for k, v in made.items() if not v.startswith("failed")}, notes


SPIN_OFF = " · spinning off"


def session(path: Path, threads: int, spinning: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The sentence embedding: the graph's own (qbench, Optimum on qbench's export) or the mean of
    its token states over the mask (sentence-transformers' export ends at the transformer)."""
    names = {i.name for i in sess.get_inputs()}
    out = sess.run(None, {k: v for k, v in inputs.items() if k in names})
    vec = next((o for o in out if o.ndim == 2), None)
    if vec is None:
        mask = inputs["attention_mask"][..., None].astype(np.float32)
        vec = (out[0] * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
    return vec


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def verdict(table: list[tuple]) -> str:
    """qbench's fastest row at cosine ≥ MIN_COSINE against the peers' fastest at ≥ that cosine
    (rows: name, p50 ms, × fp32, cosine, cpu ms; fp32 rows and qbench's own are not peers)."""
    ours = [r for r in table if r[0].startswith("qbench") and r[3] >= MIN_COSINE]
    theirs = [r for r in table if not r[0].startswith(("qbench", "ORT fp32"))]
    if not ours:
        return f"verdict: no qbench variant kept cosine ≥ {MIN_COSINE}"
    best = min(ours, key=lambda r: r[1])
    rivals = [r for r in theirs if r[3] >= MIN_COSINE]
    if not rivals:
        return (f"verdict: qbench's best {best[0]} ({best[1]:.2f} ms, cosine {best[3]:.4f}); "
                f"no peer kept cosine ≥ {MIN_COSINE}")
    peer = min(rivals, key=lambda r: r[1])
    where = "at or below" if best[1] <= peer[1] else "above"
    return (f"verdict: qbench's best {best[0]} {best[1]:.2f} ms (cosine {best[3]:.4f}) is {where} the best peer at "
            f"cosine ≥ {MIN_COSINE}, {peer[0]} {peer[1]:.2f} ms (cosine {peer[3]:.4f}): {peer[1] / best[1]:.3f}× its "
            f"speed{'' if best[3] >= peer[3] else ', at a lower cosine'}")


def cpu_line() -> str:
    """lscpu's model name and the int8/bf16 flags that decide the kernels (amx, avx512_vnni, avx512_bf16)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith("amx") or f in ("avx512_vnni", "avx_vnni", "avx512_bf16")]
    return f"{name}, {os.cpu_count()} cores; {', '.join(wanted) or 'no amx/vnni/bf16 flags'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer-python", default=os.environ.get("QBENCH_PEER_PYTHON"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per variant per round")
    parser.add_argument("--spinning", choices=("on", "off", "both"), default=None,
                        help="ONNX Runtime's intra-op pool spinning for the ONNX rows (default: both above "
                             "one thread, on at one)")
    args = parser.parse_args()
    spin = args.spinning or ("both" if args.threads > 1 else "on")
    from engines.models import load_model, resolve_model
    from engines.passes.onnx_passes import export_fp32

    model = load_model(resolve_model("all-MiniLM-L6-v2"))
    workdir = Path(tempfile.mkdtemp(prefix="qbench-peers-"))
    fp32 = export_fp32(model, workdir)
    files = {"ORT fp32 (plain graph, default session)": fp32}
    files.update(qbench_variants(model, workdir, args.threads))
    files.update(hand_written(fp32, workdir))
    made, notes = peers(args.peer_python, fp32, Path(model.details["directory"]), workdir)
    files.update(made)

    sessions = {}
    for name, path in files.items():
        if spin in ("on", "both"):
            sessions[name] = session(path, args.threads)
        if spin in ("off", "both"):
            sessions[name + SPIN_OFF] = session(path, args.threads, spinning=False)
    torch_sessions, torch_notes = qbench_torch_variants(model, workdir, args.threads)
    sessions.update(torch_sessions)
    notes += torch_notes
    ev = model.eval_inputs
    rows = len(next(iter(ev.values())))
    outs = {name: np.concatenate([embed(s, {k: v[i:i + 16] for k, v in ev.items()}) for i in range(0, rows, 16)])
            for name, s in sessions.items()}
    one = {k: v[:1] for k, v in ev.items()}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():
        embed(s, one)
    order = list(sessions)
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            for _ in range(args.calls):
                start, start_cpu = time.perf_counter(), time.process_time()
                embed(sessions[name], one)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    base_name = order[0]
    base = float(np.median(times[base_name]))
    table = []
    for name in order:
        p50 = float(np.median(times[name]))
        table.append((name, p50 * 1e3, base / p50, cosine(outs[base_name], outs[name]),
                      float(np.median(cpu[name])) * 1e3))
    ours = [row for row in table if row[0].startswith("qbench") and row[3] >= MIN_COSINE]
    best = min(ours, key=lambda row: row[1])[0] if ours else None
    load = os.getloadavg()
    print(f"all-MiniLM-L6-v2, batch 1, seq {one['input_ids'].shape[1]}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds × {args.calls} calls, spinning {spin}; load average {load[0]:.1f} "
          f"at the end; "
          f"ONNX Runtime {__import__('onnxruntime').__version__}, torch {__import__('torch').__version__}")
    print(f"CPU: {cpu_line()}")
    print(f"{'variant':74s} {'p50 ms':>8s} {'× fp32':>7s} {'cosine':>8s} {'cpu ms':>8s}")
    for name, ms, ratio, cos, cpu_ms in table:
        mark = "  ← qbench's best at cosine ≥ 0.99" if name == best else ""
        print(f"{name:74s} {ms:8.2f} {ratio:7.2f} {cos:8.4f} {cpu_ms:8.2f}{mark}")
    print(verdict(table))
    for note in notes:
        print("note:", note)
    if torch_sessions:
        print("note: the torch rows are not ONNX files: qbench's torch session (same rounds, threads, inputs); "
              "× fp32 is over the ORT fp32 row")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
