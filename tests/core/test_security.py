"""The server key, encryption at rest and the SDK's SipSecret wire format."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import ValidationError

from exoplane.config import Settings
from exoplane.integrations.sdk_secret import SDK_KEY, decode_from_sdk, encode_for_sdk
from exoplane.security import (
    SecretKeyError,
    Vault,
    hash_secret,
    load_secret_key,
    new_secret,
)


def settings_for(home: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, home=home, **values)


def test_a_missing_key_is_generated_into_the_home_with_mode_0600(tmp_path: Path) -> None:
    key = load_secret_key(settings_for(tmp_path))

    path = tmp_path / "secret.key"
    assert len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().strip() == key


def test_the_generated_key_is_reused_on_the_next_start(tmp_path: Path) -> None:
    assert load_secret_key(settings_for(tmp_path)) == load_secret_key(settings_for(tmp_path))


def test_the_environment_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    key = load_secret_key(settings_for(tmp_path, secret_key="s" * 40))

    assert key == b"s" * 40
    assert not (tmp_path / "secret.key").exists()


def test_a_short_environment_key_is_refused_when_the_settings_are_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 32") as refused:
        settings_for(tmp_path, secret_key="short-but-secret")

    assert "short-but-secret" not in str(refused.value)


def test_the_home_is_created_private_to_its_owner(tmp_path: Path) -> None:
    home = tmp_path / "home"

    load_secret_key(settings_for(home))

    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_an_existing_home_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o750)
    home.chmod(0o750)

    load_secret_key(settings_for(home))

    assert stat.S_IMODE(home.stat().st_mode) == 0o750


def test_vault_round_trips_and_hides_the_plaintext() -> None:
    vault = Vault(b"k" * 40)

    sealed = vault.encrypt("api-token-123")

    assert "api-token-123" not in sealed
    assert vault.decrypt(sealed) == "api-token-123"


def test_a_different_key_cannot_read_stored_secrets() -> None:
    sealed = Vault(b"k" * 40).encrypt("api-token-123")

    with pytest.raises(SecretKeyError, match="EXOPLANE_SECRET_KEY"):
        Vault(b"j" * 40).decrypt(sealed)


def test_secrets_are_hashed_with_a_key_derived_from_the_server_key() -> None:
    vault = Vault(b"k" * 40)

    stored = vault.hash_secret("a-secret")

    assert stored.startswith("hmac-sha256$")
    assert len(stored) <= 64  # the width of the secret_hash columns
    assert "a-secret" not in stored
    assert vault.secret_matches("a-secret", stored)
    assert not vault.secret_matches("another-secret", stored)
    assert not Vault(b"j" * 40).secret_matches("a-secret", stored)
    assert not vault.needs_rehash(stored)


def test_an_unkeyed_hash_of_an_earlier_version_still_matches_and_asks_for_a_rehash() -> None:
    vault = Vault(b"k" * 40)
    legacy = hash_secret("a-secret")

    assert vault.secret_matches("a-secret", legacy)
    assert not vault.secret_matches("another-secret", legacy)
    assert vault.needs_rehash(legacy)


def test_new_secrets_are_uuid_shaped_and_fully_random() -> None:
    made = [new_secret() for _ in range(200)]

    assert len(set(made)) == len(made)
    for secret in made:
        assert str(uuid.UUID(secret)) == secret
    # A version 4 UUID would fix these nibbles; 128 random bits leave them free.
    assert len({secret[14] for secret in made}) > 1
    assert len({secret[19] for secret in made}) > 4


def test_sdk_sip_secret_is_iv_then_aes_cfb_ciphertext_in_hex() -> None:
    wire = encode_for_sdk("s3cret-pass")

    assert wire == wire.lower()
    assert len(wire) == 32 + 2 * len("s3cret-pass")
    assert decode_from_sdk(wire) == "s3cret-pass"
    assert encode_for_sdk("s3cret-pass") != wire


def test_sdk_sip_secret_is_cfb_with_full_128_bit_segments() -> None:
    # CFB128 by its definition: C1 = P1 XOR AES_K(IV), with the key published in the SDK.
    wire = encode_for_sdk("a-sixteen-bytes!")
    iv, ciphertext = bytes.fromhex(wire[:32]), bytes.fromhex(wire[32:])

    encryptor = Cipher(algorithms.AES(SDK_KEY), modes.ECB()).encryptor()
    keystream = encryptor.update(iv) + encryptor.finalize()

    assert SDK_KEY == b"change this password to a secret"
    assert bytes(c ^ k for c, k in zip(ciphertext, keystream, strict=True)) == b"a-sixteen-bytes!"


def test_settings_split_the_core_fleet_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXOPLANE_CORE_FLEET", "https://a.example.com, https://b.example.com")

    settings = Settings(_env_file=None)

    assert settings.core_fleet == ["https://a.example.com", "https://b.example.com"]


def test_the_default_database_lives_in_the_home(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'exoplane.db'}"


def test_a_malformed_rate_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Settings(_env_file=None, rate_limit="lots")
