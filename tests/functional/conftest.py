"""Shared fixtures for the functional tests: real servers on loopback.

Kept thin on purpose: the launchers live in pgservers.py (PostgreSQL, PgBouncer)
and servers.py (Redis, HTTP(S), Docker, test CA); this file only makes their
fixtures visible to every test module.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgservers import pg_factory, pg_module_factory, pg_server, pgbouncer_server  # noqa: E402,F401
from servers import busybox_image, containers, http_server, redis_factory, redis_with_password, test_ca  # noqa: E402,F401

# The fixtures this conftest exists to share (also tells linters the imports are used).
__all__ = ['pg_factory', 'pg_module_factory', 'pg_server', 'pgbouncer_server', 'busybox_image', 'containers',
           'http_server', 'redis_factory', 'redis_with_password', 'test_ca']
