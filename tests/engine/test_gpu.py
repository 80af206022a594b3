"""On a CUDA machine: the same logits on the GPU (float32) as on the CPU; half precision close."""

import pytest
import torch

from adapterserve.engine.backbone import load_backbone
from adapterserve.engine.runner import run_rows
from adapterserve.engine.tokenize import tokenize
from adapterserve.formats import load_adapter

from ..conftest import GOLDEN, TINY

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float16", 2e-2)])
def test_gpu_matches_cpu(dtype, tol):
    cpu = load_backbone(str(TINY), "cpu", "float32")
    gpu = load_backbone(str(TINY), "cuda", dtype)
    cases = ["ah_seq_bn", "ah_double_seq_bn", "peft_lora_list", "peft_lora_bias_all"]
    rows = tokenize(cpu.tokenizer, ["short", "a longer text with several words"] * 2, None, 128, True)
    for case in cases:
        a_cpu = load_adapter(GOLDEN / case / "adapter", cpu.shape)
        a_gpu = a_cpu.to("cuda", gpu.dtype)
        want, _ = run_rows(cpu, rows, [a_cpu] * len(rows), [False] * len(rows))
        got, _ = run_rows(gpu, rows, [a_gpu] * len(rows), [False] * len(rows))
        for w, g in zip(want, got):
            assert torch.allclose(w, g.float(), atol=tol, rtol=tol), (case, (w - g.float()).abs().max())
