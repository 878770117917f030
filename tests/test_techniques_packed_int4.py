"""torch int4 artifacts pack two values per byte on disk and load back to the same module
(torch int4 on MiniLM takes ≤ 0.18x fp32's size on disk)."""

from __future__ import annotations

import copy

import pytest

from engines.passes.packed_int4 import load_packed, pack_nibbles, unpack_nibbles
from tests.conformance.contract import run_recipe, small_model


def test_nibbles_round_trip_every_int4_value_and_odd_counts():
    import torch  # here, not at collection

    values = torch.arange(-8, 8, dtype=torch.int8).repeat(3)[:-1]  # 47 values: an odd count
    packed = pack_nibbles(values)
    assert packed.dtype == torch.uint8 and packed.numel() == 24
    assert torch.equal(unpack_nibbles(packed, values.numel()), values)


def test_int4_file_is_packed_and_loads_back_to_identical_outputs():
    import torch  # here, not at collection

    fp32 = run_recipe("fp32", "torch")
    int4 = run_recipe("int4", "torch")
    artifact = int4["artifact"]
    assert any("packed two values per byte" in n for n in artifact.notes), artifact.notes
    # 4 bits a weight plus an fp32 scale and an int8 zero point per 64: ~0.145x (unpacked: 0.27x)
    assert int4["size_mb"] <= 0.16 * fp32["size_mb"], (int4["size_mb"], fp32["size_mb"])
    model, _ = small_model()
    loaded = load_packed(artifact.path, copy.deepcopy(model.module))
    x = torch.from_numpy(next(iter(model.eval_inputs.values()))[:16])
    with torch.no_grad():
        assert torch.equal(loaded(x), artifact.payload(x))


def test_a_file_of_another_kind_is_refused(tmp_path):
    import torch  # here, not at collection

    path = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a qbench packed int4 file"):
        load_packed(path, torch.nn.Linear(2, 2))
