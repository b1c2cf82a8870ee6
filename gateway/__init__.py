"""The HTTP face: Kubernetes REST routing, content negotiation, discovery, watch streaming, TLS,
kubeconfig and the CLI entry point."""

from ._app import Context, create_app
from ._pki import ensure_pki, write_kubeconfig
from ._server import Running, serve
from ._settings import Settings

__all__ = ["Context", "Running", "Settings", "create_app", "ensure_pki", "serve", "write_kubeconfig"]
