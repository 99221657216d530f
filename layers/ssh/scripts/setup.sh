#!/bin/sh
# Host keys must differ per container, so none may be baked into a layer: drop
# whatever the package's install generated; the 20-ssh-hostkeys hook makes
# them at first start (reading this module's options from /etc/composer/options/ssh.json).
set -eu

rm -f /etc/ssh/ssh_host_*key /etc/ssh/ssh_host_*key.pub

# Arch's sshd_config has no Include of sshd_config.d (older packages): add it
# at the top so this module's settings apply.
if ! grep -q -E '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config; then
    { echo 'Include /etc/ssh/sshd_config.d/*.conf'; cat /etc/ssh/sshd_config; } > /etc/ssh/sshd_config.new
    mv /etc/ssh/sshd_config.new /etc/ssh/sshd_config
fi
