"""The docs page in a real browser: headless Chromium loads /api/docs and finds every operation listed.

Chromium runs with every address but 127.0.0.1 unresolvable, so the page works with no outside network.
`python -m tests.test_docs_browser docs/api-docs.png` retakes the README's screenshot.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from server import openapi
from tests.live import live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian package `chromium`)")
RENDER_BUDGET_MS = 20000  # virtual time for Swagger UI to fetch the document and render it


def chromium(url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             f"--virtual-time-budget={RENDER_BUDGET_MS}", *args, url],
            capture_output=True, text=True, timeout=timeout)


def rendered_operations(dom: str) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation block Swagger UI rendered."""
    found = set()
    for block in re.finditer(r'class="opblock opblock-(get|post|put|patch|delete)[^"]*".*?data-path="([^"]+)"', dom,
                             re.S):
        found.add((block.group(1).upper(), html.unescape(block.group(2)).replace("\u200b", "")))
    return found


@pytest.mark.slow
def test_docs_page_lists_every_operation(base_config, tmp_root):
    with live_server(base_config, tmp_root / "browser-server") as server:
        result = chromium(server.url + "/api/docs", "--dump-dom")
        assert result.returncode == 0, result.stderr[-3000:]
        dom = result.stdout
        assert "swagger-ui" in dom
        found = rendered_operations(dom)
        assert found == openapi.operations(), (
            f"missing: {sorted(openapi.operations() - found)}; unexpected: {sorted(found - openapi.operations())}")
        assert re.search(r'<h2 class="title">\s*blog-api', dom), "the document's title is not rendered"
        shot = tmp_root / "docs.png"
        result = chromium(server.url + "/api/docs", f"--screenshot={shot}", "--window-size=1280,900")
        assert result.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


if __name__ == "__main__":  # retake the README's screenshot: python -m tests.test_docs_browser docs/api-docs.png
    import uvloop

    from server.config import Config
    from server.embedded import EmbeddedPostgres, EmbeddedRedis
    from server.migrate import migrate

    target = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="blog-api-shot-") as folder:
        root = Path(folder)
        root.chmod(0o755)
        pg, redis = EmbeddedPostgres(root / "postgres", disposable=True), EmbeddedRedis(root / "redis", persist=False)
        try:
            dsn = pg.start()
            uvloop.run(migrate(dsn))
            with live_server(Config(database_url=dsn, redis_url=redis.start()), root / "server") as server:
                done = chromium(server.url + "/api/docs", f"--screenshot={target}", "--window-size=1280,1400")
                print(done.returncode, target)
        finally:
            pg.stop()
            redis.stop()
