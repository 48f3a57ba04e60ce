# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options of a direct PostgreSQL connection (module_utils._pg.pg_connection_spec())."""

    DOCUMENTATION = r'''
options:
  url:
    description:
      - A libpq connection URL, for example V(postgresql://app@db.example.com:5432/app?sslmode=require).
      - The password may be part of the URL; it is never printed.
      - Explicit options (O(host), O(port), O(database), O(user), O(password), O(sslmode),
        O(ssl_rootcert), O(connect_timeout)) override the matching parts of the URL.
    type: str
  host:
    description:
      - Host name or IP address of the server, or the absolute path of the directory holding
        its unix socket (for example V(/var/run/postgresql)).
      - When neither this nor O(url) gives a host, the driver's default applies (the local unix socket).
    type: str
  port:
    description:
      - TCP port of the server (also selects the unix socket file name).
      - Defaults to V(5432) when neither this nor O(url) sets it.
    type: int
  database:
    description:
      - Database to connect to.
      - When neither this nor O(url) sets it, libpq's default applies (the user name).
    type: str
  user:
    description:
      - Role to connect as.
    type: str
  password:
    description:
      - Password of O(user). Never printed or returned.
    type: str
  sslmode:
    description:
      - libpq SSL mode. V(verify-full) checks both the CA and the host name.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description:
      - Path of the CA certificate file used to verify the server with O(sslmode=verify-ca) or O(sslmode=verify-full).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for a connection to be established (libpq treats values below 2 as 2).
    type: int
    default: 5
'''
