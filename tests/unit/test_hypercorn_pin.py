"""The hypercorn protocol fixes are pinned to the version they override (issue 7, items 13-14)."""

from __future__ import annotations

from importlib.metadata import version

import hypercorn.protocol

from gateway import _hypercorn_ext as ext


def test_pinned_to_the_installed_hypercorn() -> None:
    # The fixes override private methods of this version: re-check them before upgrading.
    assert version("hypercorn") == ext.HYPERCORN_VERSION
    ext.install()
    assert hypercorn.protocol.H11Protocol is ext.ReasonPhraseH11Protocol
    assert hypercorn.protocol.H2Protocol is ext.EarlyResponseH2Protocol


def test_client_certificates_reach_the_scope() -> None:
    import hypercorn.trio.run
    import hypercorn.trio.tcp_server

    ext.install()
    assert hypercorn.trio.run.TCPServer is ext.ClientCertTCPServer
    # The connection handler's run() looks its task group up in its module: the one without yields.
    assert hypercorn.trio.tcp_server.TCPServer.run.__globals__["TaskGroup"] is ext.PutNowaitTaskGroup


def _handshake(tmp_path, client_ca_dir):  # type: ignore[no-untyped-def]
    """A TLS exchange in memory: a server context made by ClientCertConfig, a client presenting a
    certificate of ``client_ca_dir``'s CA; the server reads a request and answers after it."""
    import ssl

    from gateway._pki import ensure_pki, issue_cert

    server = ensure_pki(tmp_path / "server")
    ensure_pki(client_ca_dir)
    issue_cert(client_ca_dir / "pki", "alice", tmp_path / "a.crt", tmp_path / "a.key", client=True,
               organizations=("dev",))
    cfg = ext.ClientCertConfig()
    cfg.certfile, cfg.keyfile = str(server.cert), str(server.key)
    sctx = cfg.create_ssl_context()
    assert sctx is not None and sctx.verify_mode == ssl.CERT_OPTIONAL
    cctx = ssl.create_default_context(cafile=str(server.ca_cert))
    cctx.load_cert_chain(tmp_path / "a.crt", tmp_path / "a.key")
    sin, sout, cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    s = sctx.wrap_bio(sin, sout, server_side=True)
    c = cctx.wrap_bio(cin, cout, server_hostname="127.0.0.1")
    for _ in range(4):
        for obj, inbox, outbox in ((c, sin, cout), (s, cin, sout)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            inbox.write(outbox.read())
    c.write(b"GET / HTTP/1.1\r\n\r\n")
    sin.write(cout.read())
    assert s.read() == b"GET / HTTP/1.1\r\n\r\n"  # no stale verification error on the connection
    s.write(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
    cin.write(sout.read())
    assert c.read().startswith(b"HTTP/1.1 401")
    return s.getpeercert(binary_form=True)


def test_client_certificates_are_requested_not_verified_in_the_handshake(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509

    # Signed by another CA: the handshake and the exchange succeed; the app decides (401).
    der = _handshake(tmp_path, tmp_path / "other")
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string() == "CN=alice,O=dev"
