"""Weight files: the finiteness check refuses NaN/inf but not large finite values whose sum overflows."""

import pytest
import torch
from safetensors.torch import save_file

from adapterserve.errors import InvalidAdapter
from adapterserve.formats.weights import load_tensors


def _write(tmp_path, t):
    path = tmp_path / "adapter.safetensors"
    save_file({"w": t}, str(path))
    return path


def test_large_finite_values_whose_sum_overflows_are_accepted(tmp_path):
    t = torch.full((4,), 3e38)
    assert not torch.isfinite(t.sum())
    assert torch.equal(load_tensors(_write(tmp_path, t))["w"], t)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_anywhere_is_refused(tmp_path, bad):
    t = torch.ones(3, 5)
    t[2, 4] = bad
    with pytest.raises(InvalidAdapter, match="NaN or infinite"):
        load_tensors(_write(tmp_path, t))
