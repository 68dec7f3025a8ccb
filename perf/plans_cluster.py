"""Record docs/query-plans.md's measurements on a throwaway cluster: start, migrate, load, explain, stop.

    python perf/plans_cluster.py 1000000 > /tmp/plans-1e6.md      # 10^6 posts, 10^7 comments
    python perf/plans_cluster.py 10000 > /tmp/plans-1e4.md         # 10^4 posts, 10^5 comments

The cluster is the embedded mode's (server.embedded.EmbeddedPostgres, fsync off) in a temporary folder,
removed at the end. Loading 10^6 posts takes several minutes of one core; the load's own timings go to
stderr with psql's \\timing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [".", str(Path(__file__).parent)]
from query_plans import main as explain_main  # noqa: E402
from server.embedded import EmbeddedPostgres  # noqa: E402
from server.migrate import migrate  # noqa: E402


def run(posts: int, with_plans: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="blog-api-plans-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "postgres", disposable=True)
    try:
        dsn = server.start()
        asyncio.run(migrate(dsn))
        psql = server.bindir / "psql"
        started = time.monotonic()
        subprocess.run([str(psql), dsn, "-q", "-v", f"posts={posts}", "-f", "perf/posts_dataset.sql"], check=True,
                       stdout=sys.stderr, env={**os.environ, "PGOPTIONS": "-c maintenance_work_mem=256MB"})
        # Once more from a session of its own: right after the load, VACUUM may not yet mark every page
        # all-visible (the commits of synchronous_commit=off), and index-only scans would visit the heap.
        subprocess.run([str(psql), dsn, "-q", "-c", "VACUUM ANALYZE"], check=True, stdout=sys.stderr)
        print(f"loaded in {time.monotonic() - started:.0f} s", file=sys.stderr)
        asyncio.run(explain_main(dsn, with_plans))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run(int(sys.argv[1]), "--plans" in sys.argv[2:])
