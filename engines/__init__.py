"""qbench engines: models, quantization methods, runtimes, devices and measurement.

Nothing in this package imports Textual, Rich or ``qbench_tui``. Heavy libraries (torch,
onnxruntime, transformers, mlx, coremltools) are imported lazily, inside the child process that
measures a variant; listing what exists (:mod:`engines.catalog`) stays cheap.
"""

__version__ = "0.1.0"
