"""What the device-memory peak sampler costs the timing it watches (torch on ``mps`` runs it).

    python bench/peak_sampler_overhead.py [--rounds 6] [--interval-ms 2]

Times the same callable (digits-mlp's torch fp32 module at batch 1 on the CPU, and a 0.05 ms
numpy call) with and without :class:`engines.devices.memory.PeakSampler` reading a counter every
``--interval-ms``, in alternating rounds, and prints each one's median p50 and their ratio. A ratio
near 1.00 means the sampler does not move the figures it sits beside. Report ``uptime`` with it.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from engines.bench.measure import MeasureSettings, measure_latency
from engines.devices.memory import PeakSampler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    args = parser.parse_args()
    import torch

    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    x = torch.from_numpy(model.example_inputs(1)[model.input_names[0]])
    module = model.module.eval()

    def torch_call():
        with torch.inference_mode():
            return module(x)

    a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    calls = {"digits-mlp torch bs1": torch_call, "numpy 64x64 matmul": lambda: a @ a}
    settings = MeasureSettings(warmup_reps=20, warmup_s=0.1, min_reps=200, min_time_s=0.5, max_time_s=5.0)
    held = [bytearray(1 << 20)]
    print(f"load: {os.getloadavg()}")
    print(f"{'callable':<24} {'p50 without':>12} {'p50 with':>12} {'ratio':>7}")
    for name, fn in calls.items():
        without, with_ = [], []
        for _ in range(args.rounds):
            without.append(measure_latency(fn, settings).p50)
            sampler = PeakSampler(lambda: len(held[0]), interval_s=args.interval_ms / 1000)
            sampler.start()
            with_.append(measure_latency(fn, settings).p50)
            sampler.stop()
        w, s = statistics.median(without), statistics.median(with_)
        print(f"{name:<24} {w:>10.4f}ms {s:>10.4f}ms {s / w:>7.2f}")


if __name__ == "__main__":
    main()
