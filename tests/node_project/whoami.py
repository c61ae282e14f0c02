"""A FastAPI app for the node runner's end-to-end tests: it says which instance answered.

Deployed by the tests either from this directory (an artifact with its dependency) or as
``tests.node_project.whoami:app`` from the node's own environment.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI

NODE = os.environ.get("NARUN_NODE_ID", "")
INSTANCE = os.environ.get("NARUN_INSTANCE_ID", "")
RUN = os.environ.get("NARUN_RUN_ID", "")

app = FastAPI(title="whoami")
print(f"whoami {INSTANCE} starting on {NODE}", flush=True)
print(f"whoami {INSTANCE} says hello on stderr", file=sys.stderr, flush=True)
if os.environ.get("LONG_LINE"):  # one line longer than the node's limit, then a short one
    print("L" * int(os.environ["LONG_LINE"]), flush=True)
    print(f"whoami {INSTANCE} after the long line", flush=True)


@app.get("/{prefix}/who")
async def who(prefix: str) -> dict[str, str]:
    """Who answered, and the ``COLOR`` of the version (set by the spec's env)."""
    return {
        "node": NODE,
        "instance": INSTANCE,
        "run": RUN,
        "color": os.environ.get("COLOR", ""),
        "leak": os.environ.get("NODE_SECRET", ""),
    }


@app.get("/{prefix}/sleep/{seconds}")
async def sleep(prefix: str, seconds: float) -> dict[str, str]:
    """Answer after ``seconds``: keeps requests in flight for the autoscaling tests."""
    import asyncio

    await asyncio.sleep(min(seconds, 30.0))
    return {"instance": INSTANCE}
