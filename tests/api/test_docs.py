"""/docs and /redoc work offline: headless Chromium, with every host but the loopback unreachable, renders them."""

import re
import shutil
import subprocess

import httpx
import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dom(url: str) -> str:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        # The network is blocked: names other than the loopback resolve to nothing, so a CDN script cannot load.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=15000",  # let the page's JavaScript fetch /openapi.json and render
        "--dump-dom",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_docs_page_references_only_the_package(live_server):
    for page in ("/docs", "/redoc"):
        html = httpx.get(live_server.url + page).text
        assert "cdn.jsdelivr.net" not in html and "googleapis" not in html
        for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
            r = httpx.get(live_server.url + asset)
            assert r.status_code == 200 and len(r.content) > 500, asset


def test_swagger_ui_renders_every_operation_offline(live_server):
    dom = _dom(live_server.url + "/docs")
    spec = httpx.get(live_server.url + "/openapi.json").json()
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert rendered, dom[-2000:]
    assert rendered == set(spec["paths"])


def test_redoc_renders_offline(live_server):
    dom = _dom(live_server.url + "/redoc")
    for path in ("/classify", "/tag", "/v1/embeddings"):
        assert path in dom
    assert "operation/" in dom  # ReDoc's per-operation anchors exist only once it has rendered the document
