# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filesystem helpers the modules share (the lock's, the audit log's and the proxy's state). Private to
the collection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os


def ensure_dir(directory, mode):
    """Create the directory (and parents) with mode; True when this call created it.

    Safe against a concurrent run creating it at the same moment (two deploys taking the lock, two
    hosts' writers on a shared path): that one's directory is kept as it is.
    """
    if not directory or os.path.isdir(directory):
        return False
    try:
        os.makedirs(directory, mode)
    except OSError as exc:
        if exc.errno == errno.EEXIST and os.path.isdir(directory):
            return False
        raise
    os.chmod(directory, mode)  # makedirs' mode is subject to the umask
    return True
