"""Domain errors raised by the crypto package; library exceptions never cross its boundary."""


class CryptoError(Exception):
    """Base of every error the crypto package raises."""


class SealError(CryptoError):
    """Stored content could not be sealed or opened (wrong key, tampered or truncated data)."""


class KeyFileError(CryptoError):
    """A key file is missing, unreadable, has unsafe permissions or the wrong format."""
