"""A FastAPI app deployed by the node runner: ``narun deploy examples/shop --app shop:app``.

The directory has a ``requirements.txt``, so ``narun deploy`` packs the wheels of FastAPI
and its dependencies with it; nodes install them offline. Route ``/shop/`` to the ``shop``
service in the gateway config (``examples/demo.yaml`` does).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

app = FastAPI(title="shop")


@app.get("/shop/")
async def shop() -> dict[str, str]:
    """Which instance, on which node, answered."""
    return {
        "shop": "open",
        "instance": os.environ.get("NARUN_INSTANCE_ID", "?"),
        "node": os.environ.get("NARUN_NODE_ID", "?"),
    }
