"""The soak harness, for ~20 seconds on the tiny backbone: it runs unattended, reports honestly (every
request counted, failures named), and writes its section into a doc. No timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks.soak import MARK_END, MARK_START, render, rss_by_tenth, soak, write_section

from ..conftest import TINY


@pytest.mark.slow  # a real server process under 20 s of traffic
def test_short_soak_has_no_failed_request_and_writes_its_section(tmp_path):
    result = soak(20 / 60, str(TINY), n_adapters=4, clients=2, change_every_s=1.0, workdir=tmp_path)
    assert result.requests > 0 and result.statuses[200] > 0
    assert sum(result.changes.values()) >= 5  # uploads, rollbacks, deletes really happened meanwhile
    assert result.failed == 0, result.failures
    assert result.change_failures == []
    assert result.rss_start > 0 and result.rss_end > 0 and result.fds_end > 0
    tenths = rss_by_tenth(result)
    assert len(tenths) == 10 and tenths[-1] > 0 and max(tenths) <= result.rss_peak
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nearlier sections\n")
    write_section(doc, render(result))
    write_section(doc, render(result))  # a rerun replaces its section, never duplicates it
    text = doc.read_text()
    assert text.count(MARK_START) == 1 and text.count(MARK_END) == 1 and "earlier sections" in text
    assert f"| failed requests | **{result.failed}** |" in text and "RSS at each tenth of the run (MB):" in text
