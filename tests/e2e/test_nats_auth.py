"""Secured NATS end to end: every way to authenticate, through gateway and consumer.

For each method a real nats-server is configured to require it (authorization block,
NKey user, operator mode with a JWT account, TLS with client certificates). A real
``narun serve`` and a real ``narun gateway`` connect with the matching settings, and an
HTTP request goes through. Wrong or missing credentials stop either program at start
with a one-line reason, no traceback and no secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from narun.transport.auth import NATSAuth, connect_options
from narun.transport.server import NATSServer
from tests.support import (
    Proc,
    free_port,
    start_consumer,
    unique_service,
    wait_for_port,
    write_config,
)
from tests.support.natsauth import TLSFiles, jwt_chain, make_tls, user_nkey

PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "wrong-horse-not-to-be-shown"
TOKEN = "s3cr3t-token-value"
WRONG_TOKEN = "bad-token-not-to-be-shown"


@dataclass
class Secrets:
    dir: Path
    password_file: Path
    wrong_password_file: Path
    token_file: Path
    seed_file: Path
    nkey_public: str
    creds_file: Path
    stranger_creds_file: Path
    operator_config: str
    tls: TLSFiles


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Secrets:
    d = tmp_path_factory.mktemp("secrets")

    def put(name: str, text: str) -> Path:
        path = d / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    nkey = user_nkey()
    chain = jwt_chain()
    return Secrets(
        dir=d,
        password_file=put("password", PASSWORD + "\n"),
        wrong_password_file=put("wrong-password", WRONG_PASSWORD + "\n"),
        token_file=put("token", TOKEN + "\n"),
        seed_file=put("user.nk", nkey.seed + "\n"),
        nkey_public=nkey.public,
        creds_file=put("user.creds", chain.creds),
        stranger_creds_file=put("stranger.creds", chain.other_creds),
        operator_config=chain.server_config,
        tls=make_tls(d / "tls"),
    )


@dataclass
class Servers:
    password: NATSServer
    token: NATSServer
    nkey: NATSServer
    operator: NATSServer
    tls: NATSServer


@pytest.fixture(scope="module")
def servers(secrets: Secrets, logs: Path) -> Iterator[Servers]:
    configs = {
        "password": f'authorization {{ users: [ {{ user: alice, password: "{PASSWORD}" }} ] }}',
        "token": f'authorization {{ token: "{TOKEN}" }}',
        "nkey": f"authorization {{ users: [ {{ nkey: {secrets.nkey_public} }} ] }}",
        "operator": secrets.operator_config,
        "tls": secrets.tls.server_config(verify_clients=True),
    }
    started: dict[str, NATSServer] = {}
    try:
        for name, extra in configs.items():
            started[name] = NATSServer(extra_config=extra, log_file=logs / f"nats-{name}.log")
            started[name].start()
        yield Servers(**started)
    finally:
        for server in started.values():
            server.stop()


@dataclass
class Method:
    """How the gateway and the consumer authenticate to one of the servers."""

    server: str
    gateway: dict[str, Any] = field(default_factory=dict)
    """Config keys of the gateway."""
    gateway_env: dict[str, str] = field(default_factory=dict)
    consumer: list[str] = field(default_factory=list)
    """``narun serve`` flags."""
    consumer_env: dict[str, str] = field(default_factory=dict)
    probe: NATSAuth = field(default_factory=NATSAuth)
    """How this test connects to see the consumer register."""


def methods(s: Secrets, servers: Servers) -> dict[str, Method]:
    tls = s.tls
    url_with_password = servers.password.url.replace("nats://", f"nats://alice:{PASSWORD}@")
    tls_keys = {
        "nats_tls_ca": str(tls.ca),
        "nats_tls_cert": str(tls.client_cert),
        "nats_tls_key": str(tls.client_key),
        "nats_tls_hostname": "nats.test",
    }
    return {
        "user-password": Method(
            server="password",
            gateway={"nats_user": "alice", "nats_password_file": str(s.password_file)},
            consumer=["--nats-user", "alice"],
            consumer_env={"NARUN_NATS_PASSWORD": PASSWORD},
            probe=NATSAuth(user="alice", password=PASSWORD),
        ),
        "url-userinfo": Method(
            server="password",
            gateway={"nats_url": url_with_password},
            consumer=["--nats-url", url_with_password],
            probe=NATSAuth(user="alice", password=PASSWORD),
        ),
        "token": Method(
            server="token",
            gateway_env={"NARUN_NATS_TOKEN": TOKEN},
            consumer=["--nats-token-file", str(s.token_file)],
            probe=NATSAuth(token=TOKEN),
        ),
        "nkey": Method(
            server="nkey",
            gateway={"nkey_seed_file": str(s.seed_file)},
            consumer=["--nkey-file", str(s.seed_file)],  # Go narun's flag name
            probe=NATSAuth(nkey_seed_file=str(s.seed_file)),
        ),
        "creds-jwt": Method(
            server="operator",
            gateway={"nats_creds_file": str(s.creds_file)},
            consumer_env={"NARUN_NATS_CREDS": str(s.creds_file)},
            probe=NATSAuth(creds_file=str(s.creds_file)),
        ),
        "mutual-tls": Method(
            server="tls",
            gateway=tls_keys,
            consumer=[
                *("--nats-tls-ca", str(tls.ca)),
                *("--nats-tls-cert", str(tls.client_cert)),
                *("--nats-tls-key", str(tls.client_key)),
                *("--nats-tls-hostname", "nats.test"),
            ],
            probe=NATSAuth(
                tls_ca=str(tls.ca),
                tls_cert=str(tls.client_cert),
                tls_key=str(tls.client_key),
                tls_hostname="nats.test",
            ),
        ),
    }


def gateway_proc(
    logs: Path, nats_url: str, service: str, settings: dict[str, Any], env: dict[str, str]
) -> tuple[Proc, int]:
    """A ``narun gateway`` process, not waited for (so that it starts alongside others)."""
    port = free_port()
    config = {
        "nats_url": nats_url,
        "server_addr": f"127.0.0.1:{port}",
        "metrics_addr": "",
        "request_timeout_seconds": 5,
        "routes": [{"path": "/echo/", "methods": ["GET"], "service": service}],
        **settings,
    }
    path = write_config(logs, config)
    return Proc(["gateway", "-c", str(path)], logs / f"{path.stem}.log", env=env), port


@pytest.mark.parametrize(
    "name", ["user-password", "url-userinfo", "token", "nkey", "creds-jwt", "mutual-tls"]
)
def test_request_passes_with_each_auth_method(
    name: str, secrets: Secrets, servers: Servers, logs: Path
) -> None:
    method = methods(secrets, servers)[name]
    server: NATSServer = getattr(servers, method.server)
    service = unique_service(name)
    gateway, port = gateway_proc(logs, server.url, service, method.gateway, method.gateway_env)
    try:
        consumer = start_consumer(
            logs,
            server.url,
            "tests.support.apps:asgi_app",
            service,
            *method.consumer,
            nats_options=connect_options(method.probe),
            env=method.consumer_env,
        )
        try:
            wait_for_port(port, gateway)
            response = httpx.get(f"http://127.0.0.1:{port}/echo/{name}", timeout=10)
            assert response.status_code == 200, response.text
            assert response.json()["path"] == f"/echo/{name}"
        finally:
            assert consumer.stop() == 0, consumer.output()
    finally:
        assert gateway.stop() == 0, gateway.output()
    for proc in (gateway, consumer):
        output = proc.output()
        for secret in (PASSWORD, TOKEN):
            assert secret not in output
    # The gateway logs where it connected, with any password in the URL hidden.
    assert "gateway connected to NATS at nats://" in gateway.output()
    if name == "url-userinfo":
        assert "nats://alice:***@127.0.0.1:" in gateway.output()


@dataclass
class Failure:
    proc: Proc
    expected: str
    secrets: tuple[str, ...] = ()


def test_wrong_credentials_stop_the_programs_with_a_clear_reason(
    secrets: Secrets, servers: Servers, logs: Path, nats_url: str
) -> None:
    s, tls = secrets, secrets.tls
    pw_url = servers.password.url
    failures: list[Failure] = []

    def gateway(url: str, settings: dict[str, Any], env: dict[str, str] | None = None) -> Proc:
        return gateway_proc(logs, url, unique_service("gw"), settings, env or {})[0]

    def consumer(url: str, *flags: str, env: dict[str, str] | None = None) -> Proc:
        args = [
            "serve",
            "tests.support.apps:asgi_app",
            "--service",
            unique_service("c"),
            "--nats-url",
        ]
        log = logs / f"bad-consumer-{unique_service('log')}.log"
        return Proc([*args, url, *flags], log, env=env)

    failures += [
        Failure(
            gateway(
                pw_url, {"nats_user": "alice", "nats_password_file": str(s.wrong_password_file)}
            ),
            "authorization violation: the server rejected the user name or password",
            (WRONG_PASSWORD,),
        ),
        Failure(
            gateway(pw_url.replace("nats://", f"nats://alice:{WRONG_PASSWORD}@"), {}),
            f"cannot connect to NATS at nats://alice:***@127.0.0.1:{servers.password.port}: "
            "authorization violation: the server rejected the credentials in the URL",
            (WRONG_PASSWORD,),
        ),
        Failure(
            consumer(servers.token.url, env={"NARUN_NATS_TOKEN": WRONG_TOKEN}),
            "authorization violation: the server rejected the token",
            (WRONG_TOKEN,),
        ),
        Failure(
            consumer(servers.token.url),
            "authorization violation: the server requires credentials",
        ),
        Failure(
            consumer(servers.operator.url, "--nats-creds-file", str(s.stranger_creds_file)),
            "authorization violation: the server rejected the credentials (JWT)",
        ),
        Failure(
            gateway(servers.nkey.url, {"nkey_seed_file": str(s.dir / "missing.nk")}),
            f"cannot read NKey seed file {s.dir / 'missing.nk'}: No such file or directory",
        ),
        Failure(
            gateway(servers.tls.url, {"nats_tls_hostname": "nats.test"}),
            "TLS certificate verification failed: unable to get local issuer certificate "
            "(set nats_tls_ca to the CA file?)",
        ),
        Failure(
            consumer(servers.tls.url, "--nats-tls-ca", str(tls.ca)),
            "TLS certificate verification failed: IP address mismatch",
        ),
        Failure(
            consumer(
                servers.tls.url, "--nats-tls-ca", str(tls.ca), "--nats-tls-hostname", "nats.test"
            ),
            "the server requires a client certificate (set nats_tls_cert and nats_tls_key)",
        ),
        Failure(
            # A server without TLS: never carry on in plain text when TLS was asked for.
            consumer(nats_url, "--nats-tls-ca", str(tls.ca)),
            "TLS options are set but the server did not start TLS",
        ),
        Failure(
            consumer(servers.password.url, "--nats-user", "alice"),
            "nats_password_file: required with a user (or set NARUN_NATS_PASSWORD)",
        ),
    ]
    problems = []
    for failure in failures:
        code = failure.proc.wait(timeout=30)
        output = failure.proc.output()
        ok = (
            code != 0
            and failure.expected in output
            and "Traceback" not in output
            and not any(secret in output for secret in failure.secrets)
        )
        if not ok:
            problems.append(f"exit {code}, expected {failure.expected!r} in:\n{output}")
    assert not problems, "\n\n".join(problems)
