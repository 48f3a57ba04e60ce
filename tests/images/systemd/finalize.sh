#!/bin/sh
# Runs inside the new root file system (chroot or docker build) to make it a
# well-behaved systemd test host. Part of the image recipe: editing it rebuilds the image.
set -eu
# Timers that would grab the apt/dpkg lock in the middle of a converge.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
            systemd-tmpfiles-clean.timer dpkg-db-backup.timer \
            getty.target console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-firstboot.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
# Each container gets its own machine id at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# Keep downloaded .debs: /var/cache/apt/archives is a cache shared by all test hosts.
printf 'Binary::apt::APT::Keep-Downloaded-Packages "true";\nAPT::Keep-Downloaded-Packages "true";\n' \
  > /etc/apt/apt.conf.d/99shipyard-keep-debs
rm -f /etc/apt/apt.conf.d/docker-clean
# Quiet, non-interactive package installs.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/99shipyard-no-recommends
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
# Lists were removed: make them look ancient so `apt: update_cache, cache_valid_time`
# refreshes them on first use instead of trusting the directory's fresh mtime.
rm -f /var/lib/apt/periodic/update-success-stamp
touch -d @0 /var/lib/apt/lists
