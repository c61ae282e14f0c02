"""A flat app beside its requirements.txt (no pyproject.toml), packed by the artifact tests."""

from __future__ import annotations

from itsdangerous import Signer


def signed(text: str) -> str:
    """``text`` signed with this fixture's key."""
    return Signer("reqapp").sign(text).decode()
