"""TLS and SASL for every Kafka client the engine runs, from one set of settings.

Three client libraries talk to Kafka here: Faust (the worker), aiokafka (the
model follower) and kafka-python (topics, replay, alerts tail, evaluator).
Each spells the same options differently; this module is the one translation.
Secrets (``FRAUDSTREAM_SASL_PASSWORD``, ``FRAUDSTREAM_SSL_PASSWORD``) are never
logged: the settings object hides them from ``repr``.

Example:
    >>> s = Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    ...              sasl_username="fraud", sasl_password="pw")
    >>> kw = client_kwargs(s)
    >>> kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"]
    ('SASL_SSL', 'SCRAM-SHA-512', 'fraud')
    >>> client_kwargs(Settings())
    {}
"""

from __future__ import annotations

import ssl
from typing import Any

from stream.contracts.settings import Settings, SettingsError

__all__ = ["client_kwargs", "faust_credentials", "ssl_context"]

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _check(settings: Settings) -> None:
    if settings.security_protocol not in _PROTOCOLS:
        raise SettingsError(f"FRAUDSTREAM_SECURITY_PROTOCOL must be one of {_PROTOCOLS}")
    if settings.security_protocol.startswith("SASL") and settings.sasl_mechanism not in _MECHANISMS:
        raise SettingsError(f"FRAUDSTREAM_SASL_MECHANISM must be one of {_MECHANISMS}")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """An SSL context for SSL / SASL_SSL, verifying the broker against ``ssl_cafile``."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None,
                                password=settings.ssl_password or None)
    if not settings.ssl_check_hostname:
        context.check_hostname = False
    return context


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for the Faust app (None for PLAINTEXT)."""
    import faust

    _check(settings)
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        ssl_context=ssl_context(settings),
        mechanism=settings.sasl_mechanism,
    )


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka and kafka-python clients (they share these names)."""
    _check(settings)
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kw: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        kw["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL"):
        kw.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                  sasl_plain_password=settings.sasl_password)
    return kw
