"""The seed's ``goodbye`` route (GET /goodbye), served by an ordinary Flask (WSGI) app.

Serve it with ``narun serve examples.goodbye.app:app --service goodbye``.
"""

from __future__ import annotations

import socket

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/goodbye")
def goodbye() -> ResponseReturnValue:
    """Say goodbye to ``?name=`` (default: stranger)."""
    name = request.args.get("name", "stranger")
    return jsonify(message=f"Goodbye, {name}!", consumer_host=socket.gethostname())
