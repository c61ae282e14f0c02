"""A small FastAPI app, unchanged, served over NATS.

Serve it with ``narun serve examples.fastapi_items.app:app --service items`` and route
``/items/`` to the ``items`` service in the gateway config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel


class Item(BaseModel):
    """An item in the store."""

    name: str
    price: float


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, dict[int, Item]]]:
    """The store lives in lifespan state: it exists only once startup ran."""
    yield {"store": {}}


app = FastAPI(title="items", lifespan=lifespan)


def _store(request: Request) -> dict[int, Item]:
    store: dict[int, Item] = request.state.store
    return store


@app.get("/items/")
async def list_items(request: Request) -> dict[int, Item]:
    """Every item, by id."""
    return _store(request)


@app.put("/items/{item_id}")
async def put_item(item_id: int, item: Item, request: Request) -> Item:
    """Create or replace an item."""
    _store(request)[item_id] = item
    return item


@app.get("/items/{item_id}")
async def get_item(item_id: int, request: Request) -> Item:
    """One item, or 404."""
    item = _store(request).get(item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="item not found")
    return item
