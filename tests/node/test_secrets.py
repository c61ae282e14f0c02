"""Secrets: AES-256-GCM bound to the name, Go narun's stored JSON, the master key's sources."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from narun.node.secrets import (
    MasterKey,
    SecretError,
    StoredSecret,
    decrypt,
    encrypt,
    load_master_key,
    new_master_key,
    secret_name_problem,
)

KEY = MasterKey(bytes(range(32)))


def test_round_trip_and_a_fresh_nonce_each_time() -> None:
    ct1, n1 = encrypt(KEY, "db", b"hunter2")
    ct2, n2 = encrypt(KEY, "db", b"hunter2")
    assert len(n1) == 12
    assert n1 != n2
    assert ct1 != ct2
    assert len(ct1) == len(b"hunter2") + 16  # ciphertext then the GCM tag, as Go's Seal
    assert decrypt(KEY, "db", ct1, n1) == b"hunter2"


def test_the_name_is_the_associated_data() -> None:
    ct, nonce = encrypt(KEY, "db", b"hunter2")
    # what Go's gcm.Seal(nil, nonce, plaintext, []byte(name)) gives, computed independently
    assert AESGCM(bytes(range(32))).decrypt(nonce, ct, b"db") == b"hunter2"
    with pytest.raises(SecretError, match="does not decrypt") as err:
        decrypt(KEY, "other", ct, nonce)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("what", ["key", "ciphertext", "nonce"])
def test_wrong_key_or_altered_bytes_do_not_decrypt(what: str) -> None:
    ct, nonce = encrypt(KEY, "db", b"hunter2")
    key = new_master_key() if what == "key" else KEY
    if what == "ciphertext":
        ct = bytes([ct[0] ^ 1]) + ct[1:]
    if what == "nonce":
        nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    with pytest.raises(SecretError, match="does not decrypt"):
        decrypt(key, "db", ct, nonce)


def test_bad_nonce_size_and_bad_key_size() -> None:
    ct, _ = encrypt(KEY, "db", b"x")
    with pytest.raises(SecretError, match="nonce is 8 bytes"):
        decrypt(KEY, "db", ct, b"12345678")
    with pytest.raises(SecretError, match="32 bytes"):
        MasterKey(b"short")


def test_stored_json_is_go_narun_s_shape() -> None:
    stored = StoredSecret.seal(KEY, "db", b"hunter2", description="the db")
    doc = json.loads(stored.encode())
    assert list(doc) == ["name", "ciphertext", "nonce", "description", "created_at", "updated_at"]
    assert base64.b64decode(doc["nonce"]) == stored.nonce  # []byte: standard base64
    assert base64.b64decode(doc["ciphertext"]) == stored.ciphertext
    back = StoredSecret.decode(stored.encode(), key_name="db")
    assert back.open(KEY) == b"hunter2"
    assert "hunter2" not in repr(back)
    plain = json.loads(StoredSecret.seal(KEY, "db", b"v").encode())
    assert "description" not in plain  # omitempty


def test_an_update_keeps_created_at() -> None:
    first = StoredSecret(
        "db", b"", b"", created_at="2020-01-01T00:00:00Z", updated_at="2020-01-01T00:00:00Z"
    )
    second = StoredSecret.seal(KEY, "db", b"new", previous=first)
    assert second.created_at == "2020-01-01T00:00:00Z"
    assert second.updated_at != first.updated_at


def test_a_document_stored_under_another_name_is_refused() -> None:
    raw = StoredSecret.seal(KEY, "db", b"x").encode()
    with pytest.raises(SecretError, match="names 'db'"):
        StoredSecret.decode(raw, key_name="other")
    with pytest.raises(SecretError, match="not a stored secret"):
        StoredSecret.decode(b"{}", key_name="db")


def test_master_key_sources_in_order(tmp_path: Path) -> None:
    text = KEY.text()
    path = tmp_path / "key"
    path.write_text(text + "\n")
    other = new_master_key().text()
    assert load_master_key(path, env={"NARUN_MASTER_KEY": other}) is not None
    from_file = load_master_key(path, env={})
    assert from_file is not None
    assert from_file.text() == text
    from_path_env = load_master_key(None, env={"NARUN_MASTER_KEY_PATH": str(path)})
    assert from_path_env is not None
    assert from_path_env.text() == text
    from_env = load_master_key(None, env={"NARUN_MASTER_KEY": other})
    assert from_env is not None
    assert from_env.text() == other
    assert load_master_key(None, env={}) is None
    assert text not in repr(from_env)


def test_unusable_master_keys_say_why(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="not base64"):
        load_master_key(None, env={"NARUN_MASTER_KEY": "not base64!"})
    with pytest.raises(SecretError, match="32 bytes \\(got 3\\)"):
        load_master_key(None, env={"NARUN_MASTER_KEY": base64.b64encode(b"abc").decode()})
    with pytest.raises(SecretError, match="cannot read the master key file"):
        load_master_key(tmp_path / "missing", env={})


def test_secret_names() -> None:
    assert secret_name_problem("db-pass_1") is None
    assert secret_name_problem("a.b") is not None
    assert secret_name_problem("") is not None
