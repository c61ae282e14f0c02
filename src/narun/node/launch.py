"""How one run of an instance is started: its command line and its environment (pure).

:func:`launch` turns a spec, a slot and what the node installed into a
:class:`~narun.node.instance.Launch`. The environment is built from nothing: a few basics
of the node's, the variables ``--pass-env`` names, narun's own (Go narun's names), then the
spec's. Nothing else of the node's environment (its NATS credentials, its secrets) reaches
an instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from narun.node.instance import Launch
from narun.node.spec import AppSpec

__all__ = ["BASE_ENV", "PYTHON_ENV", "instance_env", "launch", "strip_credentials"]

BASE_ENV = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "SYSTEMROOT"})
"""Node variables every instance gets (and every ``LC_*``)."""
PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
"""Never given to an artifact's venv (unless the spec sets them): the venv's packages win."""


def strip_credentials(url: str) -> str:
    """``url`` (comma-separated servers) without user, password or token."""
    parts = []
    for one in url.split(","):
        u = urlsplit(one.strip())
        netloc = u.netloc.rpartition("@")[2]
        parts.append(urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)))
    return ",".join(parts)


def instance_env(
    node_env: Mapping[str, str],
    *,
    spec: AppSpec,
    index: int,
    node_id: str,
    run_id: str,
    root: Path,
    nats_url: str,
    pass_env: Sequence[str] = (),
) -> dict[str, str]:
    """The environment of one run: basics, ``pass_env``, narun's variables, the spec's."""
    env = {k: v for k, v in node_env.items() if k in BASE_ENV or k.startswith("LC_")}
    env.update({k: node_env[k] for k in pass_env if k in node_env})
    if spec.artifact is not None:
        for name in PYTHON_ENV:
            env.pop(name, None)
    env.update(
        {
            "NARUN_APP_NAME": spec.name,
            "NARUN_INSTANCE_ID": f"{spec.name}-{index}",
            "NARUN_NODE_ID": node_id,
            "NARUN_REPLICA_INDEX": str(index),
            "NARUN_RUN_ID": run_id,
            "NARUN_INSTANCE_ROOT": str(root),
            "NARUN_NATS_URL": strip_credentials(nats_url),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(spec.env)
    return env


def launch(
    spec: AppSpec,
    *,
    root: Path,
    python: str,
    executable: str | None,
    nats_url: str,
    env: Mapping[str, str],
) -> Launch:
    """The command line of a run: ``narun serve`` for ``app``, else the command/executable."""
    if spec.app is not None:
        argv = [python, "-m", "narun", "serve", spec.app, "--service", spec.service_name or ""]
        argv += ["--nats-url", strip_credentials(nats_url)]
        argv += ["--interface", spec.interface, "--app-dir", str(root)]
        for route in spec.routes:
            argv += ["--route", route.flag()]
        for name in spec.grpc_routes:
            argv += ["--grpc-route", name]
    elif spec.command is not None:
        argv = list(spec.command)
    elif executable is not None:
        argv = [executable]
    else:  # the spec's validator makes this unreachable
        raise ValueError(f"app {spec.name} has nothing to run")
    return Launch(argv=(*argv, *spec.args), env=dict(env), cwd=root)
