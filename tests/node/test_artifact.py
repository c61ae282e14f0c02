"""Artifacts for real: pip packs a project, a JetStream nats-server stores it, a venv runs it."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from narun.node import installer, packer
from narun.node.archive import MANIFEST_NAME, Manifest, digest_key, normalize_digest, object_name
from narun.node.artifact import (
    ARTIFACT_BUCKET,
    Artifact,
    ArtifactError,
    Installed,
    download,
    file_digest,
    install,
    pack,
    upload,
)
from narun.node.binfmt import HEAD_SIZE, executable_platform, go_platform
from narun.node.installer import uninstall
from narun.transport.server import NATSServer
from tests.support import unique_service

pytestmark = pytest.mark.slow

PYAPP = Path(__file__).parent / "pyapp"
# Where the artifact tests' processes must not find narun or the app: only the venv has them.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
DEAD_PROXY = "http://127.0.0.1:9"  # discard port: any download attempt fails at once


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return pack(PYAPP, work_dir=tmp_path_factory.mktemp("pack"))


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """No network for pip: a node installs from the artifact's wheels alone."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            mp.setenv(name, DEAD_PROXY)
        mp.delenv("no_proxy", raising=False)
        mp.delenv("NO_PROXY", raising=False)
        yield


@pytest.fixture
def offline() -> Iterator[None]:
    with no_network():
        yield


@pytest.fixture(scope="module")
def installed(packed: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    with no_network():
        return install(
            packed.path,
            digest=packed.digest,
            kind="python",
            cache_dir=tmp_path_factory.mktemp("cache"),
        )


@pytest.fixture
async def js(jetstream_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(jetstream_url)
    yield nc.jetstream()
    await nc.close()


def run_python(python: Path, code: str, *, cwd: Path) -> str:
    proc = subprocess.run(
        [str(python), "-c", code],
        cwd=cwd,
        env=CLEAN_ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def marker(installed: Installed) -> dict[str, object]:
    home = installed.root if installed.python is None else installed.root.parent
    body: dict[str, object] = json.loads((home / "installed.json").read_text())
    return body


# -- pack -----------------------------------------------------------------------------------


def test_pack_holds_the_project_its_wheels_and_narun(packed: Artifact) -> None:
    assert packed.kind == "python"
    assert packed.path.name.endswith(".tar.gz")
    assert packed.digest == file_digest(packed.path)
    assert packed.size == packed.path.stat().st_size
    with tarfile.open(packed.path, "r:gz") as tar:
        names = tar.getnames()
        manifest_file = tar.extractfile(MANIFEST_NAME)
        assert manifest_file is not None
        manifest = Manifest.from_json(manifest_file.read())
        assert all(m.uid == 0 and m.mtime == 315532800 for m in tar.getmembers())
    assert names[0] == MANIFEST_NAME
    assert "project/pyproject.toml" in names
    assert "project/artifact_fixture_app/main.py" in names
    wheels = {w.split("-")[0].lower() for w in manifest.wheels}
    # The app's own wheel, its dependency, narun and narun's dependencies.
    assert {"artifact_fixture_app", "itsdangerous", "narun", "nats_py", "pydantic"} <= wheels
    assert all(f"wheels/{w}" in names for w in manifest.wheels)
    assert manifest.python == f"cpython-{sys.version_info[0]}.{sys.version_info[1]}"
    # pip built in a copy: the user's directory got no build/ or *.egg-info.
    assert sorted(p.name for p in PYAPP.iterdir()) == ["artifact_fixture_app", "pyproject.toml"]


def test_packing_unchanged_code_again_gives_the_same_digest(
    packed: Artifact, tmp_path: Path
) -> None:
    # From another folder, at another time: the same bytes, so nothing new to store.
    copy = tmp_path / "elsewhere"
    shutil.copytree(PYAPP, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "artifact_fixture_app" / "main.py").touch()
    again = pack(copy, work_dir=tmp_path / "work")
    assert again.digest == packed.digest
    assert again.path.read_bytes() == packed.path.read_bytes()


def test_pack_leaves_out_caches_and_what_narunignore_names(tmp_path: Path) -> None:
    source = tmp_path / "proj"
    for name, text in {
        "app/main.py": "x = 1\n",
        "app/__pycache__/main.cpython-311.pyc": "",
        ".git/config": "",
        ".venv/bin/python": "",
        "data/big.csv": "1,2\n",
        ".env": "SECRET=1\n",
        ".narunignore": "*.csv\n/.env\n",
        "empty/.keep": "",
    }.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    dirs, files = packer._copy_project(source, tmp_path / "copy")
    assert files == [".narunignore", "app/main.py", "empty/.keep"]
    assert dirs == ["app", "data", "empty"]
    assert (tmp_path / "copy" / "app" / "main.py").read_text() == "x = 1\n"
    assert not (tmp_path / "copy" / ".env").exists()


def test_pack_takes_an_executable_as_it_is(tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $0\n")
    script.chmod(0o755)
    artifact = pack(script, work_dir=tmp_path / "work")
    assert artifact.kind == "executable"
    assert artifact.path.read_bytes() == script.read_bytes()
    assert artifact.digest == file_digest(script)
    assert artifact.size == script.stat().st_size


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "needs a pyproject.toml with a \\[project\\] table or a requirements.txt"),
        ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, "needs a pyproject.toml"),
        ({"pyproject.toml": "[project\nname="}, "not valid TOML"),
    ],
)
def test_pack_refuses_what_is_not_a_python_project(
    tmp_path: Path, files: dict[str, str], reason: str
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text)
    with pytest.raises(ArtifactError, match=reason):
        pack(project, work_dir=tmp_path / "work")


def test_pack_refuses_a_plain_file_and_a_missing_path(tmp_path: Path) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_text("x")
    with pytest.raises(ArtifactError, match="must be executable"):
        pack(plain, work_dir=tmp_path / "work")
    with pytest.raises(ArtifactError, match="no such file"):
        pack(tmp_path / "missing", work_dir=tmp_path / "work")


def test_pack_refuses_symlinks_in_the_project(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "requirements.txt").write_text("")
    (project / "link").symlink_to("/etc/hostname")
    with pytest.raises(ArtifactError, match="symbolic links are not packed"):
        pack(project, work_dir=tmp_path / "work")


def test_pack_refuses_an_app_dependency_that_conflicts_with_narun(tmp_path: Path) -> None:
    # App and narun share one venv, so pip resolves them together, on the deploying machine.
    project = tmp_path / "proj"
    project.mkdir()
    (project / "requirements.txt").write_text("pydantic<2\n")
    with pytest.raises(ArtifactError, match=r"resolving the dependencies .* failed") as info:
        pack(project, work_dir=tmp_path / "work")
    assert "ResolutionImpossible" in str(info.value)
    assert "narun" in str(info.value)
    assert not [p for p in (tmp_path / "work").iterdir() if p.name.startswith(".pack-")]


# -- store and fetch ------------------------------------------------------------------------


async def test_upload_download_round_trip(
    js: JetStreamContext, packed: Artifact, tmp_path: Path
) -> None:
    name = unique_service("shop")
    object_name = await upload(js, packed, name=name)
    assert object_name.startswith(f"{name}-")
    assert len(object_name) == len(name) + 17
    store = await js.object_store(ARTIFACT_BUCKET)
    info = await store.get_info(object_name)
    # Our digest is the Object Store's own.
    assert info.digest == packed.digest
    assert info.headers is not None
    assert info.headers["narun-digest"] == [packed.digest]
    assert info.headers["narun-kind"] == ["python"]
    assert info.headers["narun-app-name"] == [name]
    # Storing it again keeps the stored object (same nuid: no second upload).
    assert await upload(js, packed, name=name) == object_name
    assert (await store.get_info(object_name)).nuid == info.nuid

    path = await download(js, object_name, dest_dir=tmp_path, digest=packed.digest)
    assert path.read_bytes() == packed.path.read_bytes()
    assert path.parent.name == digest_key(packed.digest)
    # Cached by digest: the second call does not fetch (the object is gone by then).
    await store.delete(object_name)
    assert await download(js, object_name, dest_dir=tmp_path, digest=packed.digest) == path
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


async def test_a_damaged_cached_file_is_fetched_again(
    js: JetStreamContext, packed: Artifact, tmp_path: Path
) -> None:
    object_name = await upload(js, packed, name=unique_service("shop"))
    path = await download(js, object_name, dest_dir=tmp_path, digest=packed.digest)
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"tampered")
    again = await download(js, object_name, dest_dir=tmp_path, digest=packed.digest)
    assert again.read_bytes() == packed.path.read_bytes()


async def test_download_refuses_an_object_with_another_digest(
    js: JetStreamContext, packed: Artifact, tmp_path: Path
) -> None:
    object_name = await upload(js, packed, name=unique_service("shop"))
    store = await js.object_store(ARTIFACT_BUCKET)
    await store.put(object_name, b"someone else's code")  # replaced under the same name
    with pytest.raises(ArtifactError, match=r"has digest .* the spec wants .*: refused"):
        await download(js, object_name, dest_dir=tmp_path, digest=packed.digest)
    assert await asyncio.to_thread(files_under, tmp_path) == []


async def test_download_refuses_bytes_that_do_not_match_the_stored_digest(
    js: JetStreamContext, packed: Artifact, tmp_path: Path
) -> None:
    # The object's metadata claims the artifact's digest, its chunks hold other bytes.
    object_name = await upload(js, packed, name=unique_service("shop"))
    store = await js.object_store(ARTIFACT_BUCKET)
    forged = await store.put(object_name, b"x" * 1000)
    forged.digest = packed.digest
    meta_subject = (
        f"$O.{ARTIFACT_BUCKET}.M.{base64.urlsafe_b64encode(object_name.encode()).decode()}"
    )
    await js.publish(
        meta_subject, json.dumps(forged.as_dict()).encode(), headers={"Nats-Rollup": "sub"}
    )
    with pytest.raises(ArtifactError, match="refused and deleted"):
        await download(js, object_name, dest_dir=tmp_path, digest=packed.digest)
    assert await asyncio.to_thread(files_under, tmp_path) == []


async def test_download_of_a_missing_object_or_bucket_says_so(
    js: JetStreamContext, tmp_path: Path
) -> None:
    await js.create_object_store(ARTIFACT_BUCKET)
    digest = normalize_digest("SHA-256=" + "A" * 43)
    with pytest.raises(ArtifactError, match="is not in bucket 'app-binaries'"):
        await download(js, "nothing-here", dest_dir=tmp_path, digest=digest)
    with NATSServer(extra_config=f'jetstream {{ store_dir: "{tmp_path / "js"}" }}') as fresh:
        nc = await nats.connect(fresh.url)
        try:
            with pytest.raises(ArtifactError, match="does not exist: nothing was deployed"):
                await download(nc.jetstream(), "x", dest_dir=tmp_path, digest=digest)
        finally:
            await nc.close()


async def test_without_jetstream_upload_says_so(packed: Artifact, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(ArtifactError, match="JetStream is not enabled"):
            await asyncio.wait_for(upload(nc.jetstream(), packed, name="shop"), 30)
    finally:
        await nc.close()


# -- install --------------------------------------------------------------------------------


def test_installed_venv_runs_the_app_with_its_dependency_and_narun(installed: Installed) -> None:
    assert installed.python is not None
    assert installed.executable is None
    venv = installed.python.parent.parent
    out = run_python(
        installed.python,
        "import narun, itsdangerous, artifact_fixture_app.main as m, narun.consumer;"
        "print(narun.__file__); print(itsdangerous.__file__); print(m.signed('hi'))",
        cwd=installed.root,
    )
    narun_file, dep_file, signed = out.splitlines()
    assert Path(narun_file).is_relative_to(venv)
    assert Path(dep_file).is_relative_to(venv)
    assert signed.startswith("hi.")
    assert (installed.root / "artifact_fixture_app" / "main.py").is_file()
    # The command a node runs: python -m narun serve (its CLI and dependencies are all there).
    serve = subprocess.run(
        [str(installed.python), "-m", "narun", "serve", "--help"],
        cwd=installed.root,
        env=CLEAN_ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert serve.returncode == 0, serve.stderr.decode()
    assert b"--service" in serve.stdout


def test_second_install_reuses_the_first(installed: Installed, packed: Artifact) -> None:
    cache_dir = installed.root.parent.parent
    before = marker(installed)
    # Reused without reading the archive (a node may have pruned its download cache).
    again = install(
        cache_dir / "gone.tar.gz", digest=packed.digest, kind="python", cache_dir=cache_dir
    )
    assert again == installed
    assert marker(again) == before


def test_install_refuses_an_archive_with_another_digest(packed: Artifact, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.tar.gz"
    data = bytearray(packed.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"has digest .* expected .*: refused"):
        install(tampered, digest=packed.digest, kind="python", cache_dir=tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")] == []


def test_installed_kind_must_match(installed: Installed, packed: Artifact) -> None:
    with pytest.raises(ArtifactError, match="installed as 'python', not 'executable'"):
        install(
            packed.path,
            digest=packed.digest,
            kind="executable",
            cache_dir=installed.root.parent.parent,
        )


def test_two_concurrent_installs_of_one_digest(
    packed: Artifact, offline: None, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    code = (
        "import sys; from pathlib import Path; from narun.node.installer import install;"
        "i = install(Path(sys.argv[1]), digest=sys.argv[2], kind='python',"
        " cache_dir=Path(sys.argv[3])); print(i.python)"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(packed.path), packed.digest, str(cache_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                install, packed.path, digest=packed.digest, kind="python", cache_dir=cache_dir
            )
            for _ in range(2)
        ]
        results = [f.result(timeout=300) for f in futures]
    first_marker = marker(results[0])
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err.decode()
    assert results[0] == results[1]
    assert out.decode().strip() == str(results[0].python)
    # One of the three built it; the others waited and reused it.
    assert marker(results[0]) == first_marker
    assert results[0].python is not None
    run_python(results[0].python, "import itsdangerous, narun", cwd=results[0].root)


def test_a_half_built_install_is_removed_and_built_again(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho tool says hi\n")
    tool.chmod(0o755)
    digest = file_digest(tool)
    cache_dir = tmp_path / "cache"
    leftover = cache_dir / digest_key(digest)
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("from an installer that died")
    installed = install(tool, digest=digest, kind="executable", cache_dir=cache_dir)
    assert not (leftover / "junk").exists()
    assert installed.executable is not None
    assert subprocess.run([installed.executable], capture_output=True, check=True).stdout == (
        b"tool says hi\n"
    )
    uninstall(digest, cache_dir=cache_dir)
    assert not leftover.exists()


def _tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return file_digest(path)


def test_install_refuses_an_archive_with_a_link_or_an_escape(tmp_path: Path) -> None:
    manifest = Manifest(wheels=(), narun_version="0", python="cpython-3.11", platform="x")
    link = tarfile.TarInfo("project/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    for bad, reason in [
        (link, "link or special file"),
        (tarfile.TarInfo("../escaped"), "plain relative path"),
    ]:
        archive = tmp_path / "bad.tar.gz"
        digest = _tar(archive, [(tarfile.TarInfo(MANIFEST_NAME), manifest.to_json()), (bad, b"")])
        with pytest.raises(ArtifactError, match=reason):
            install(archive, digest=digest, kind="python", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escaped").exists()
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []


def test_install_says_where_the_wheels_were_built_when_pip_fails(tmp_path: Path) -> None:
    wheel = "fake-1.0-cp399-cp399-linux_x86_64.whl"
    manifest = Manifest(
        wheels=(wheel,), narun_version="0", python="cpython-3.99", platform="elsewhere-arm"
    )
    archive = tmp_path / "alien.tar.gz"
    folder = tarfile.TarInfo("wheels")
    folder.type = tarfile.DIRTYPE
    digest = _tar(
        archive,
        [
            (tarfile.TarInfo(MANIFEST_NAME), manifest.to_json()),
            (folder, b""),
            (tarfile.TarInfo(f"wheels/{wheel}"), b"not really a wheel"),
        ],
    )
    with pytest.raises(ArtifactError, match=r"built for cpython-3.99 on elsewhere-arm") as info:
        install(archive, digest=digest, kind="python", cache_dir=tmp_path / "cache")
    assert "fake" in str(info.value)


# -- end to end -------------------------------------------------------------------------------


async def test_python_artifact_from_pack_to_a_running_venv(
    js: JetStreamContext, packed: Artifact, offline: None, tmp_path: Path
) -> None:
    object_name = await upload(js, packed, name=unique_service("shop"))
    path = await download(js, object_name, dest_dir=tmp_path / "dl", digest=packed.digest)
    installed = await asyncio.to_thread(
        install, path, digest=packed.digest, kind="python", cache_dir=tmp_path / "apps"
    )
    assert installed.python is not None
    out = run_python(
        installed.python,
        "import artifact_fixture_app.main as m; print(m.signed('e2e'))",
        cwd=installed.root,
    )
    assert out.startswith("e2e.")


async def test_executable_artifact_from_pack_to_a_run(js: JetStreamContext, tmp_path: Path) -> None:
    script = tmp_path / "greet.sh"
    script.write_text('#!/bin/sh\necho "greetings $1"\n')
    script.chmod(0o755)
    artifact = pack(script, work_dir=tmp_path / "work")
    name = unique_service("greet")
    object_name = await upload(js, artifact, name=name)
    info = await (await js.object_store(ARTIFACT_BUCKET)).get_info(object_name)
    assert info.headers is not None
    assert info.headers["narun-kind"] == ["executable"]
    assert info.headers["narun-original-file"] == ["greet.sh"]
    path = await download(js, object_name, dest_dir=tmp_path / "dl", digest=artifact.digest)
    installed = install(path, digest=artifact.digest, kind="executable", cache_dir=tmp_path / "a")
    assert installed.executable is not None
    assert installed.python is None
    assert installed.executable.stat().st_mode & 0o777 == 0o755
    proc = await asyncio.create_subprocess_exec(
        installed.executable, "node", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out == b"greetings node\n"


# -- more ways in -------------------------------------------------------------------------------


def test_a_requirements_only_project_runs_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = pack(PYAPP.parent / "reqapp", work_dir=tmp_path / "work")
    with tarfile.open(artifact.path, "r:gz") as tar:
        names = tar.getnames()
    assert "project/reqapp_main.py" in names
    assert any(n.startswith("wheels/itsdangerous-") for n in names)
    assert any(n.startswith("wheels/narun-") for n in names)
    # ... installed by a node whose Python has no pip (a uv-made environment): the venv
    # gets CPython's bundled pip and installs with it, offline as well.
    monkeypatch.setattr(installer, "_node_has_pip", lambda: False)
    with no_network():
        installed = install(
            artifact.path, digest=artifact.digest, kind="python", cache_dir=tmp_path / "apps"
        )
    assert installed.python is not None
    assert list((installed.python.parent.parent / "lib").glob("python*/site-packages/pip"))
    out = run_python(
        installed.python,
        "import reqapp_main, narun; print(reqapp_main.signed('r')); print(narun.__file__)",
        cwd=installed.root,
    )
    signed, narun_file = out.splitlines()
    assert signed.startswith("r.")
    assert Path(narun_file).is_relative_to(installed.python.parent.parent)


def test_pack_without_narun_metadata_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ArtifactError, match="narun's package metadata is missing"):
        pack(PYAPP, work_dir=tmp_path)


async def test_two_concurrent_downloads_of_one_digest(
    js: JetStreamContext, packed: Artifact, tmp_path: Path
) -> None:
    object_name = await upload(js, packed, name=unique_service("shop"))
    paths = await asyncio.gather(
        *(download(js, object_name, dest_dir=tmp_path, digest=packed.digest) for _ in range(2))
    )
    assert paths[0] == paths[1]
    assert await asyncio.to_thread(paths[0].read_bytes) == packed.path.read_bytes()
    assert await asyncio.to_thread(files_under, tmp_path) == [paths[0]]


async def test_upload_refuses_a_file_changed_after_packing(
    js: JetStreamContext, tmp_path: Path
) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho v1\n")
    tool.chmod(0o755)
    artifact = pack(tool, work_dir=tmp_path / "work")
    artifact.path.write_text("#!/bin/sh\necho v2\n")
    name = unique_service("tool")
    with pytest.raises(ArtifactError, match="changed after it was packed"):
        await upload(js, artifact, name=name)
    store = await js.object_store(ARTIFACT_BUCKET)
    with pytest.raises(nats.js.errors.ObjectNotFoundError):
        await store.get_info(object_name(name, artifact.digest))


def test_install_refuses_an_executable_of_another_platform(tmp_path: Path) -> None:
    here = go_platform(sys.platform, platform.machine())
    other = 0xB7 if here[1] != "arm64" else 0x3E  # an arm64 ELF here, else an amd64 one
    program = tmp_path / "server"
    program.write_bytes(
        b"\x7fELF\x02\x01\x01\x00" + bytes(10) + struct.pack("<H", other) + bytes(64)
    )
    program.chmod(0o755)
    with pytest.raises(ArtifactError, match=r"is built for linux/.*; this node is"):
        install(program, digest=file_digest(program), kind="executable", cache_dir=tmp_path / "c")


async def test_an_executables_platform_is_stored_with_it(
    js: JetStreamContext, tmp_path: Path
) -> None:
    binary = Path(shutil.which("true") or "/bin/true")
    artifact = await asyncio.to_thread(pack, binary, work_dir=tmp_path / "work")
    head = await asyncio.to_thread(binary.read_bytes)
    expected = executable_platform(head[:HEAD_SIZE])
    if expected is None:
        pytest.skip(f"{binary} is not in a format this test knows")
    oname = await upload(js, artifact, name=unique_service("true"))
    info = await (await js.object_store(ARTIFACT_BUCKET)).get_info(oname)
    assert info.headers is not None
    assert (info.headers["narun-goos"], info.headers["narun-goarch"]) == (
        [expected[0]],
        [expected[1]],
    )
    path = await download(js, oname, dest_dir=tmp_path / "dl", digest=artifact.digest)
    installed = await asyncio.to_thread(
        install, path, digest=artifact.digest, kind="executable", cache_dir=tmp_path / "c"
    )
    assert installed.executable is not None
    proc = await asyncio.create_subprocess_exec(installed.executable)
    assert await proc.wait() == 0


async def test_upload_of_what_pack_did_not_make_says_why(
    js: JetStreamContext, tmp_path: Path
) -> None:
    not_a_tar = tmp_path / "x.tar.gz"
    not_a_tar.write_bytes(b"plain bytes")
    fake = Artifact(path=not_a_tar, digest=file_digest(not_a_tar), kind="python", size=11)
    with pytest.raises(ArtifactError, match="is not a python artifact"):
        await upload(js, fake, name="fake")
    missing = Artifact(path=tmp_path / "gone", digest=fake.digest, kind="executable", size=1)
    with pytest.raises(ArtifactError, match=r"reading .*gone failed"):
        await upload(js, missing, name="fake")


def test_a_damaged_marker_means_install_again(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho ok\n")
    tool.chmod(0o755)
    digest = file_digest(tool)
    first = install(tool, digest=digest, kind="executable", cache_dir=tmp_path / "c")
    assert first.executable is not None
    (first.root / "installed.json").write_text('{"kind": "executable"}')
    again = install(tool, digest=digest, kind="executable", cache_dir=tmp_path / "c")
    assert again == first
    assert marker(again)["root"] == "."
