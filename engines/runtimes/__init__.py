"""Runtimes: turn a loaded model into a quantized artifact, load it, run it.

Each runtime module exposes ``quantize(model, method, config, workdir) -> Artifact`` and
``open_session(artifact, model, device, threads) -> Session``. They are imported only in the
child process that measures a variant.
"""
