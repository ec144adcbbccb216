"""The ``SipSecret`` wire format that Exotel's browser SDK decrypts (exotel-facts §1.7.3).

This is an obfuscation with a key published in the SDK, not protection: it exists only so the
real SDK can read the SIP password it is handed. At rest the secret is encrypted by the Vault.
"""

from __future__ import annotations

import os

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

# ASCII "change this password to a secret": the key compiled into Exotel's SDKs.
SDK_KEY = bytes.fromhex("6368616e676520746869732070617373776f726420746f206120736563726574")


def encode_for_sdk(plaintext: str) -> str:
    """Hex of a fresh 16-byte IV followed by AES-256-CFB128 ciphertext."""
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(SDK_KEY), CFB(iv)).encryptor()
    return (iv + encryptor.update(plaintext.encode()) + encryptor.finalize()).hex()


def decode_from_sdk(wire: str) -> str:
    raw = bytes.fromhex(wire)
    decryptor = Cipher(algorithms.AES(SDK_KEY), CFB(raw[:16])).decryptor()
    return (decryptor.update(raw[16:]) + decryptor.finalize()).decode()
