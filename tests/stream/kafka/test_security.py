"""Client security settings map onto each library, and secrets stay out of reprs."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from stream.contracts.settings import Settings, SettingsError
from stream.kafka.security import client_kwargs, faust_credentials, ssl_context


def test_plaintext_needs_nothing():
    assert client_kwargs(Settings()) == {} and faust_credentials(Settings()) is None


def test_sasl_ssl_maps_to_every_client():
    import faust

    s = Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u", sasl_password="pw")
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and isinstance(kw["ssl_context"], ssl.SSLContext)
    assert (kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("SCRAM-SHA-256", "u", "pw")
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.mechanism.value == "SCRAM-SHA-256"


def test_unknown_protocol_refused():
    with pytest.raises(SettingsError, match=r"FRAUDSTREAM_SECURITY_PROTOCOL must be one of .*'SASL_SSL'"):
        client_kwargs(Settings(security_protocol="TLS"))


def test_secrets_hidden_from_repr():
    s = Settings(sasl_password="hunter2-sasl", ssl_password="hunter2-ssl", model_signing_key="hunter2-signing-key")
    assert "hunter2" not in repr(s)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test CA")
def test_ssl_context_trusts_the_configured_ca_and_loads_client_cert(tmp_path):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=test-ca")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.pem", "-days", "1",
        "-subj", "/CN=client")
    s = Settings(security_protocol="SSL", ssl_cafile=str(tmp_path / "ca.pem"),
                 ssl_certfile=str(tmp_path / "client.pem"), ssl_keyfile=str(tmp_path / "client.key"))
    context = ssl_context(s)
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert any(c["subject"] == ((("commonName", "test-ca"),),) for c in context.get_ca_certs())
