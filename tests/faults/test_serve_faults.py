"""A served model under hostile requests: the exported FastAPI service itself (the template every
export writes) on loopback, with a token. Oversized bodies, deep nesting, NaN, no token; and 200
concurrent valid requests still all answered."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from engines.export.templates import __file__ as templates_init
from tests.helpers import qbench

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _tiny_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "W"], ["logits"])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    _tiny_model(root / "model.onnx")
    folder = root / "deploy" / "fastapi"
    folder.mkdir(parents=True)
    shutil.copy(Path(templates_init).parent / "files" / "fastapi_app.py", folder / "app.py")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "QBENCH_SERVE_TOKEN": TOKEN}, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            break
        except httpx.TransportError:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the service did not start within 90 s"
            time.sleep(0.3)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)


def test_healthz_says_healthy_without_internals(service):
    assert httpx.get(f"{service}/healthz", timeout=10).json() == {"status": "ok"}


def test_requests_without_the_token_get_401(service):
    body = {"inputs": [[1.0, 2.0, 3.0, 4.0]]}
    assert httpx.post(f"{service}/predict", json=body, timeout=10).status_code == 401
    assert httpx.post(f"{service}/predict", json=body, headers={"Authorization": "Bearer wrong"},
                      timeout=10).status_code == 401
    assert httpx.get(f"{service}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{service}/info", timeout=10).status_code == 401
    info = httpx.get(f"{service}/info", headers=AUTH, timeout=10).json()
    assert info["file"] == "model.onnx" and not Path(info["file"]).is_absolute()
    answer = httpx.post(f"{service}/predict", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 200 and len(answer.json()["outputs"]["logits"][0]) == 3


def test_a_20_mb_body_gets_413_before_it_is_read(service):
    body = b'{"inputs": [[' + b"1.0, " * (4 * 1024 * 1024) + b"1.0]]}"
    assert len(body) > 20 * 1024 * 1024
    try:
        answer = httpx.post(f"{service}/predict", content=body, headers={**AUTH, "Content-Type": "application/json"},
                            timeout=30)
        assert answer.status_code == 413 and "MAX_BODY_BYTES" in answer.text
    except httpx.WriteError:  # the server answered and closed before the client finished sending: refused
        pass
    assert httpx.get(f"{service}/healthz", timeout=10).status_code == 200


def test_deep_nesting_and_too_many_values_are_refused_before_parsing(service):
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = httpx.post(f"{service}/predict", content=deep, headers={**AUTH, "Content-Type": "application/json"},
                        timeout=30)
    assert answer.status_code == 422 and "nested" in answer.text
    many = b'{"inputs": [' + b"0," * 1_100_000 + b"0]}"
    answer = httpx.post(f"{service}/predict", content=many, headers={**AUTH, "Content-Type": "application/json"},
                        timeout=30)
    assert answer.status_code == 413 and "MAX_ELEMENTS" in answer.text


@pytest.mark.parametrize("row", ["[NaN, 1, 2, 3]", "[Infinity, 1, 2, 3]", "[1e999, 1, 2, 3]"])
def test_non_finite_inputs_are_refused(service, row):
    answer = httpx.post(f"{service}/predict", content=f'{{"inputs": [{row}]}}'.encode(),
                        headers={**AUTH, "Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 422 and "finite" in answer.text


def test_200_concurrent_valid_requests_are_all_answered(service):
    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            calls = [client.post(f"{service}/predict", json={"inputs": [[float(i), 1.0, 2.0, 3.0]]}, headers=AUTH)
                     for i in range(200)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(main()) == [200] * 200


def test_serve_refuses_to_bind_beyond_loopback_without_a_token(tmp_path):
    proc = qbench("serve", "1", "--host", "0.0.0.0", "--port", str(_free_port()), "--db", str(tmp_path / "q.db"),
                  env={"QBENCH_SERVE_TOKEN": ""}, timeout=120)
    assert proc.returncode == 2 and "--token" in proc.stderr and "--no-auth" in proc.stderr, proc.stderr
    assert not (tmp_path / "q.db").exists()  # refused before anything was opened
