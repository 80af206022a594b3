"""A work item's token count includes the prompt tokens the runner will put before each row."""

from adapterserve.engine.tokenize import Encoded
from adapterserve.engine.work import WorkItem
from adapterserve.formats import load_adapter
from adapterserve.snapshot import Snapshot
from adapterserve.store.base import VersionInfo

from ..conftest import GOLDEN, backbone_for


def test_prompt_tokens_count_in_the_batch_budget():
    bb = backbone_for("tiny-bert")
    prompt = load_adapter(GOLDEN / "peft_prompt_text" / "adapter", bb.shape)  # 6 virtual tokens
    lora = load_adapter(GOLDEN / "peft_lora_list" / "adapter", bb.shape)
    rows = [Encoded([101, 7, 102], None), Encoded([101, 7, 8, 9, 102], None)]
    info = VersionInfo("0" * 16, "0" * 64, 0.0, 0)
    with_prompt = WorkItem("p", Snapshot("p", info, prompt), rows, False, 0.0, None)
    plain = WorkItem("l", Snapshot("l", info, lora), rows, False, 0.0, None)
    assert plain.tokens == 8 and plain.max_len == 5
    assert with_prompt.tokens == 8 + 2 * 6 and with_prompt.max_len == 5 + 6
