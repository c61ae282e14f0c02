"""The artifact format's pure rules: digests, names, manifest, archive members, narun's wheel."""

from __future__ import annotations

import base64
import email.parser
import hashlib
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from narun.node.archive import (
    MANIFEST_NAME,
    ArtifactError,
    Manifest,
    Member,
    check_members,
    check_name,
    digest_key,
    format_digest,
    is_excluded,
    local_file_name,
    normalize_digest,
    object_headers,
    object_name,
    parse_ignore,
    short_digest,
)
from narun.node.selfwheel import build_self_wheel

SHA = hashlib.sha256(b"hello artifact").digest()
DIGEST = "SHA-256=" + base64.urlsafe_b64encode(SHA).decode()


def test_digest_is_sha256_in_padded_base64url_after_the_object_store_prefix() -> None:
    assert format_digest(SHA) == DIGEST
    assert DIGEST.endswith("=")  # 32 bytes: one pad character, as Go and nats-py write it
    assert len(DIGEST) == len("SHA-256=") + 44


def test_digest_refuses_a_hash_of_the_wrong_size() -> None:
    with pytest.raises(ArtifactError, match="32 bytes"):
        format_digest(b"short")


@pytest.mark.parametrize(
    "spelling",
    [DIGEST, "sha-256=" + DIGEST[8:], DIGEST.rstrip("=")],
)
def test_normalize_accepts_other_spellings_of_one_digest(spelling: str) -> None:
    assert normalize_digest(spelling) == DIGEST


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "does not start"),
        ("SHA-512=" + DIGEST[8:], "does not start"),
        (DIGEST[:-5], "not 32 bytes"),
        (DIGEST[:-2] + "+=", "not 32 bytes"),  # standard base64, not base64url
        (DIGEST + "AA", "not 32 bytes"),
    ],
)
def test_normalize_refuses_what_is_not_a_sha256_digest(bad: str, reason: str) -> None:
    with pytest.raises(ArtifactError, match=reason):
        normalize_digest(bad)


def test_digest_key_is_unpadded_and_file_name_safe() -> None:
    key = digest_key(DIGEST)
    assert len(key) == 43
    assert base64.urlsafe_b64decode(key + "=") == SHA
    assert local_file_name(key) == key


def test_object_name_is_app_name_and_16_hex_digits_of_the_hash() -> None:
    assert short_digest(DIGEST) == SHA.hex()[:16]
    assert object_name("shop", DIGEST) == f"shop-{SHA.hex()[:16]}"
    other = format_digest(hashlib.sha256(b"another version").digest())
    assert object_name("shop", other) != object_name("shop", DIGEST)


@pytest.mark.parametrize("name", ["shop", "Shop.v2_x-1", "a" * 100, "0day"])
def test_valid_app_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "-x", "a b", "a" * 101, "ü"])
def test_invalid_app_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ArtifactError, match="letters, digits"):
        object_name(name, DIGEST)


def test_local_file_name_replaces_unsafe_characters() -> None:
    assert local_file_name("a/b c:d") == "a_b_c_d"
    assert len(local_file_name("x" * 300)) == 100
    with pytest.raises(ArtifactError):
        local_file_name("..")


def test_object_headers_record_digest_kind_and_build_platform() -> None:
    manifest = Manifest(
        wheels=("a-1-py3-none-any.whl",),
        narun_version="0.1.0",
        python="cpython-3.11",
        platform="linux-x86_64",
    )
    headers = object_headers(
        name="shop",
        digest=DIGEST.rstrip("="),
        kind="python",
        original_file="shop.tar.gz",
        manifest=manifest,
    )
    assert headers["narun-digest"] == [DIGEST]
    assert headers["narun-kind"] == ["python"]
    assert headers["narun-app-name"] == ["shop"]
    assert headers["narun-python"] == ["cpython-3.11"]
    assert headers["narun-platform"] == ["linux-x86_64"]
    plain = object_headers(
        name="tool", digest=DIGEST, kind="executable", original_file="tool", manifest=None
    )
    assert "narun-python" not in plain
    assert plain["narun-original-file"] == ["tool"]


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("app/main.py", False),
        ("pyproject.toml", False),
        (".env.example", False),
        ("app/__pycache__/main.cpython-311.pyc", True),
        ("app/main.pyc", True),
        (".git/config", True),
        (".venv/bin/python", True),
        ("build/lib/app.py", True),
        ("app.egg-info/PKG-INFO", True),
        ("src/app/.mypy_cache/x", True),
    ],
)
def test_what_stays_out_of_an_artifact(path: str, excluded: bool) -> None:
    assert is_excluded(PurePosixPath(path)) is excluded


def test_manifest_round_trips_and_is_stable() -> None:
    manifest = Manifest(
        wheels=("narun-0.1.0-py3-none-any.whl", "itsdangerous-2.2.0-py3-none-any.whl"),
        narun_version="0.1.0",
        python="cpython-3.11",
        platform="linux-x86_64",
    )
    data = manifest.to_json()
    assert Manifest.from_json(data) == manifest
    assert Manifest.from_json(data).to_json() == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"format": "1"}', "'format' must be an integer"),
        (b'{"format": 99, "kind": "python"}', "newer than this narun knows"),
        (b'{"format": 1, "kind": "executable"}', "'kind' must be 'python'"),
        (b'{"format": 1, "kind": "python", "wheels": ["../evil.whl"]}', "wheel file names"),
        (b'{"format": 1, "kind": "python", "wheels": ["x.tar.gz"]}', "wheel file names"),
        (b'{"format": 1, "kind": "python", "wheels": []}', "'narun_version'"),
    ],
)
def test_bad_manifests_are_refused_naming_the_field(data: bytes, reason: str) -> None:
    with pytest.raises(ArtifactError, match=reason):
        Manifest.from_json(data)


GOOD = [
    Member(MANIFEST_NAME, "file"),
    Member("project", "dir"),
    Member("project/app", "dir"),
    Member("project/app/main.py", "file"),
    Member("wheels", "dir"),
    Member("wheels/narun-0.1.0-py3-none-any.whl", "file"),
]


def test_a_well_formed_archive_passes() -> None:
    check_members(GOOD, wheels=["narun-0.1.0-py3-none-any.whl"])


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (Member("/etc/passwd", "file"), "plain relative path"),
        (Member("project/../../x", "file"), "plain relative path"),
        (Member("./project/x", "file"), "plain relative path"),
        (Member("project//x", "file"), "plain relative path"),
        (Member("project\\x", "file"), "plain relative path"),
        (Member("project/link", "other"), "link or special file"),
        (Member("project/app/main.py", "file"), "appears twice"),
        (Member("etc/x", "file"), "outside project/ and wheels/"),
        (Member("wheels/sub/x.whl", "file"), "holds only .whl"),
        (Member("wheels/readme.txt", "file"), "holds only .whl"),
    ],
)
def test_archive_entries_a_node_must_not_unpack(member: Member, reason: str) -> None:
    with pytest.raises(ArtifactError, match=reason):
        check_members([*GOOD, member])


def test_archive_without_manifest_or_with_missing_wheels_is_refused() -> None:
    with pytest.raises(ArtifactError, match=r"has no narun-artifact\.json"):
        check_members(GOOD[1:])
    with pytest.raises(ArtifactError, match=r"lacks wheels .*: x-1-py3-none-any.whl"):
        check_members(GOOD, wheels=["x-1-py3-none-any.whl"])
    with pytest.raises(ArtifactError, match="must be a folder"):
        check_members([GOOD[0], Member("project", "file")])


def test_narun_wheel_holds_the_package_and_its_metadata(tmp_path: Path) -> None:
    wheel = build_self_wheel(tmp_path / "a")
    assert wheel.name.startswith("narun-")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        for line in record:
            name, hashed, size = line.rsplit(",", 2)
            if not hashed:
                continue
            data = zf.read(name)
            assert int(size) == len(data)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hashed == "sha256=" + expected.decode()
    assert "narun/__init__.py" in names
    assert "narun/node/artifact.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert len(record) == len(names)
    assert metadata["Name"] == "narun"
    assert any(r.startswith("nats-py") for r in metadata.get_all("Requires-Dist") or [])
    assert "console_scripts" in zf_text(wheel, f"{info}/entry_points.txt")
    # Equal code gives an equal wheel (a stable artifact digest where pip allows it).
    assert build_self_wheel(tmp_path / "b").read_bytes() == wheel.read_bytes()


def zf_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name).decode()


IGNORE = """
# data and secrets stay home
*.csv
node_modules
data/raw/
/secrets/*.pem
"""


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("app/main.py", False),
        ("report.csv", True),
        ("app/deep/table.csv", True),
        ("web/node_modules/x/index.js", True),
        ("data/raw", True),
        ("data/raw/2024/a.json", True),
        ("data/clean/a.json", False),
        ("app/data/raw/a.json", False),  # anchored at the top
        ("secrets/key.pem", True),
        ("secrets/readme.md", False),
        ("app/secrets/key.pem", False),
    ],
)
def test_narunignore_patterns(path: str, excluded: bool) -> None:
    patterns = parse_ignore(IGNORE)
    assert patterns == ("*.csv", "node_modules", "/data/raw", "/secrets/*.pem")
    assert is_excluded(PurePosixPath(path), patterns) is excluded


def test_narunignore_refuses_reinclusion_naming_the_line() -> None:
    with pytest.raises(ArtifactError, match=r"\.narunignore line 2: '!' patterns"):
        parse_ignore("*.log\n!keep.log\n")
