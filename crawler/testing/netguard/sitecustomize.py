"""Loaded into every test subprocess: no connection may leave 127.0.0.1.

Test crawls reach made-up hosts through the local test web acting as a proxy.
Anything that tries to resolve or connect elsewhere (a forgotten proxy, a
library phoning home) fails loudly instead of going out.
"""

import socket

_ALLOWED_HOSTS = {"127.0.0.1", "localhost", "::1"}
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkGuardError(OSError):
    pass


def _check_host(host):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or str(host) in _ALLOWED_HOSTS or str(host).startswith("127."):
        return
    raise NetworkGuardError(f"test network guard: refusing to resolve or connect to {host!r} (only 127.0.0.1 is allowed)")


def _guarded_getaddrinfo(host, *args, **kwargs):
    _check_host(host)
    return _real_getaddrinfo(host, *args, **kwargs)


def _guarded_connect(self, address):
    if isinstance(address, tuple):
        _check_host(address[0])
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if isinstance(address, tuple):
        _check_host(address[0])
    return _real_connect_ex(self, address)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex

_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex


def _guarded_gethostbyname(host):
    _check_host(host)
    return _real_gethostbyname(host)


def _guarded_gethostbyname_ex(host):
    _check_host(host)
    return _real_gethostbyname_ex(host)


socket.gethostbyname = _guarded_gethostbyname
socket.gethostbyname_ex = _guarded_gethostbyname_ex
