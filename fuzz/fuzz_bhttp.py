"""Coverage-guided fuzzing of the Binary HTTP decoders with atheris.

Only ``BinaryHTTPError`` may escape ``decode_request`` / ``decode_response``; any other
exception is a crash that atheris reports with the input that caused it. Whatever
decodes must also re-encode and decode to the same value.

    python -m fuzz.fuzz_bhttp -runs=1000000        # what `make fuzz` runs
"""

from __future__ import annotations

import atheris

import fuzz

with atheris.instrument_imports():
    from narun.errors import BinaryHTTPError
    from narun.protocol import bhttp

SEEDS = [
    bhttp.encode_request(
        bhttp.Request(
            method="POST",
            scheme="https",
            authority="example.com",
            path="/hello/?a=1",
            headers=((b"content-type", b"application/json"), (b"set-cookie", b"a=1")),
            content=b'{"name":"x"}',
            trailers=((b"x-t", b"1"),),
        ),
        indeterminate=indeterminate,
    )
    for indeterminate in (False, True)
] + [
    bhttp.encode_response(
        bhttp.Response(
            status=200,
            headers=((b"content-type", b"text/plain"),),
            content=b"hello" * 100,
            informational=(bhttp.InformationalResponse(status=103, headers=((b"link", b"x"),)),),
        ),
        indeterminate=indeterminate,
    )
    for indeterminate in (False, True)
]


def check(data: bytes) -> None:
    """One fuzz input: decode as request and as response."""
    try:
        request = bhttp.decode_request(data)
    except BinaryHTTPError:
        pass
    else:
        again = bhttp.decode_request(bhttp.encode_request(request))
        assert again == request, (request, again)
    try:
        response = bhttp.decode_response(data)
    except BinaryHTTPError:
        pass
    else:
        again_r = bhttp.decode_response(bhttp.encode_response(response))
        assert again_r == response, (response, again_r)


def main() -> None:
    """Run atheris with the command-line arguments (``-runs=N`` etc.)."""
    fuzz.run(check, SEEDS, "bhttp")


if __name__ == "__main__":
    main()
