"""CURVE keys between node daemons and the root daemon of a job that spans several nodes.

A key directory (`logger-daemon keygen DIR`) holds two ZeroMQ certificates in ZeroMQ's own file
format: `root.key` / `root.key_secret` (the root's) and `node.key` / `node.key_secret` (what every
node presents). The same directory is copied to every node of the job, readable by its user only,
and never into a log directory. The root accepts exactly the client keys whose public certificate
(`*.key`) is in the directory; a node must know the root's public key to talk to it at all.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

__all__ = ["NODE", "ROOT", "BadKeys", "generate", "secure_client", "secure_server"]

ROOT, NODE = "root", "node"


class BadKeys(ValueError):
    """A key directory that is missing, incomplete or open to other users."""


def generate(directory: str) -> list[str]:
    """Writes a root and a node certificate into `directory` (made private); returns the paths."""
    import zmq.auth  # here, not at the top: it imports asyncio, which a daemon without keys never needs

    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    for name in (ROOT, NODE):
        for path in (os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.key_secret")):
            if os.path.exists(path):
                raise BadKeys(f"keys: {path} exists already; keygen never overwrites a key")
    paths = []
    for name in (ROOT, NODE):
        public, secret = zmq.auth.create_certificates(directory, name)
        os.chmod(secret, 0o600)
        paths += [public, secret]
    return paths


def _load(directory: str, name: str, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = os.path.join(directory, f"{name}.key_secret" if secret else f"{name}.key")
    try:
        mode = os.stat(directory).st_mode
    except OSError as exc:
        raise BadKeys(f"keys: cannot read the key directory {directory!r}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadKeys(f"keys: {directory!r} is open to other users (chmod 700 it)")
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise BadKeys(f"keys: cannot load {path!r}: {exc}") from None


def secure_server(context: zmq.Context, sock: zmq.Socket, directory: str) -> ThreadAuthenticator:
    """Makes `sock` (not yet bound) a CURVE server that only the directory's client keys may
    reach; returns the authenticator thread, to be stopped with the socket."""
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = _load(directory, ROOT, secret=True)
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=directory)
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    return authenticator


def secure_client(sock: zmq.Socket, directory: str) -> None:
    """Makes `sock` (not yet connected) a CURVE client of the root, with the node's key."""
    root_public, _ = _load(directory, ROOT, secret=False)
    public, secret = _load(directory, NODE, secret=True)
    sock.curve_serverkey = root_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
