"""Regenerate ``hello_pb2.py``, ``hello_pb2.pyi`` and ``hello_pb2_grpc.py`` from hello.proto.

    python -m examples.grpc_hello.gen_stubs

Needs ``grpcio-tools`` (``pip install 'narun[examples]'``). protoc writes
``import hello_pb2`` in the gRPC stubs; this rewrites it as a package-relative import
so that the stubs load as ``examples.grpc_hello.hello_pb2_grpc``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Run protoc on hello.proto, then fix the stubs' import."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    status: int = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"--python_out={HERE}",
            f"--pyi_out={HERE}",
            f"--grpc_python_out={HERE}",
            str(HERE / "hello.proto"),
        ]
    )
    if status != 0:
        return status
    stubs = HERE / "hello_pb2_grpc.py"
    text = re.sub(r"(?m)^import hello_pb2 as ", "from . import hello_pb2 as ", stubs.read_text())
    stubs.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
