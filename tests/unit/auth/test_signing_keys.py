"""The gateway's own signing key files: created once (0600, atomically), never rewritten."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from clerk_gateway.auth.signing_keys import SigningKeyError, load_or_create_key, load_signing_keys


def _pem(private: object) -> bytes:
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                                 serialization.NoEncryption())


def test_a_missing_file_is_created_with_mode_0600_in_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "keys" / "signing.pem"
    key = load_or_create_key(str(path))
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.alg == "RS256" and key.public_jwk["kty"] == "RSA" and key.public_jwk["use"] == "sig"
    assert "d" not in key.public_jwk and "p" not in key.public_jwk
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_an_existing_file_is_never_rewritten_and_gives_the_same_kid(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    first = load_or_create_key(str(path))
    before = path.read_bytes()
    second = load_or_create_key(str(path))
    assert path.read_bytes() == before and second.kid == first.kid


def test_workers_starting_at_once_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    kids: list[str] = []
    threads = [threading.Thread(target=lambda: kids.append(load_or_create_key(str(path)).kid)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1 and len(kids) == 8


def test_ed25519_keys_sign_as_eddsa(tmp_path: Path) -> None:
    path = tmp_path / "ed.pem"
    path.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    key = load_or_create_key(str(path))
    assert key.alg == "EdDSA" and key.public_jwk["crv"] == "Ed25519" and key.public_jwk["kty"] == "OKP"


@pytest.mark.parametrize(("private", "message"), [
    (rsa.generate_private_key(public_exponent=65537, key_size=1024), "at least 2048 bits"),
    (ec.generate_private_key(ec.SECP256R1()), "only RSA"),
])
def test_unusable_keys_are_refused_naming_the_file(tmp_path: Path, private: object, message: str) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(_pem(private))
    with pytest.raises(SigningKeyError, match=message) as caught:
        load_or_create_key(str(path))
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_a_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pem"
    path.write_text("secret-looking-garbage")
    with pytest.raises(SigningKeyError) as caught:
        load_or_create_key(str(path))
    assert "secret-looking-garbage" not in str(caught.value) and str(path) in str(caught.value)


def test_rotation_lists_keep_their_order_and_drop_duplicates(tmp_path: Path) -> None:
    new, old = str(tmp_path / "new.pem"), str(tmp_path / "old.pem")
    keys = load_signing_keys([new, old, new])
    assert [key.path for key in keys] == [new, old]
    with pytest.raises(SigningKeyError):
        load_signing_keys([])
