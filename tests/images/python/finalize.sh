#!/bin/sh
# Runs inside the new root file system (chroot or docker build) to make it a
# small base image for the reference app. Part of the recipe: editing it rebuilds the image.
set -eu
apt-get clean
# Nothing in a container reads these; images are moved into test hosts with
# docker save/load, so every MB counts.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/* \
       /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/lintian \
       /usr/share/locale/* /usr/share/common-licenses /tmp/* /var/tmp/*
# Keep the copyright files' directory present (dpkg expects it), empty.
mkdir -p /usr/share/doc /usr/share/man /usr/share/locale
# The app's non-root user: uid/gid 10001, no shell, no home of its own.
groupadd --gid 10001 app
useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app
