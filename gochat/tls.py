"""The TLS certificate and key: loaded at start, again on SIGHUP, and by --check-config.

All three go through `load_context`, so the check cannot pass a pair that
the daemon refuses, and a renewal picked up by SIGHUP is judged like one
read at start. Every failure is one line naming the setting and the file,
because OpenSSL's own words ("[SSL] PEM lib") name neither.

When TLS runs at all (`off_reason`): if the operator named a certificate
or key (environment, .env or flag) TLS is wanted, and a missing file is an
error. Only the defaults, certs/server.crt and certs/server.key, may be
absent, and then TLS is quietly off. GOCHAT_TLS_CERT=none turns TLS off on
purpose.
"""

from __future__ import annotations

import os
import ssl

from gochat.config import Config

NO_TLS = frozenset({"none", "off"})
"""GOCHAT_TLS_CERT values that turn TLS off."""


class TlsError(ValueError):
    """The certificate or key cannot be used; the message names the setting and file."""


class _Encrypted(Exception):
    """Raised from the password callback: there is no one to type a passphrase."""


def off_reason(config: Config) -> tuple[str, bool] | None:
    """Why TLS is off as configured, and whether that deserves a warning; None: TLS runs.

    None also when a named file is missing: `load_context` then says which.
    """
    cert, key = config.tls_cert, config.tls_key
    if cert.strip().lower() in NO_TLS:
        return f"GOCHAT_TLS_CERT={cert}", False
    if {"tls_cert", "tls_key"} & config.explicit:
        return None
    have_cert, have_key = os.path.exists(cert), os.path.exists(key)
    if have_cert and have_key:
        return None
    if have_cert or have_key:
        return f"{key if have_cert else cert} is missing", True
    return f"no {cert} and {key} (see certs/README.md)", False


def load_context(config: Config) -> ssl.SSLContext:
    """A server context with the configured pair; TlsError with one line if it will not do."""
    cert, key = config.tls_cert, config.tls_key
    cert_name, key_name = f"GOCHAT_TLS_CERT={cert}", f"GOCHAT_TLS_KEY={key}"
    for name, path in ((cert_name, cert), (key_name, key)):
        if not os.path.exists(path):
            raise TlsError(f"{name}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise TlsError(
            f"{key_name}: the key is encrypted; give gochat an unencrypted key"
        ) from None
    except PermissionError as exc:
        name = cert_name if exc.filename == cert else key_name
        raise TlsError(f"{name}: permission denied") from None
    except OSError as exc:  # ssl.SSLError is an OSError too
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TlsError(f"{key_name} does not match the certificate {cert_name}") from None
        if not isinstance(exc, ssl.SSLError):
            raise TlsError(f"cannot read {cert} or {key}: {exc.strerror or exc}") from None
        if not _is_certificate(cert):
            raise TlsError(f"{cert_name}: not a PEM certificate") from None
        raise TlsError(f"{key_name}: not a PEM private key") from None
    return context


def _no_passphrase() -> bytes:
    raise _Encrypted


def _is_certificate(path: str) -> bool:
    """Whether `path` holds at least one PEM certificate (to say which file is wrong)."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True
