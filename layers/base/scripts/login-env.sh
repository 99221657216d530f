#!/bin/sh
# Login shells get the image's environment from /run/composer/login-env.sh (written by
# the 05-login-env start-up hook): sh/bash through /etc/profile.d, zsh through zshenv
# (Debian's zsh does not read /etc/profile).
set -eu
line='[ -r /etc/profile.d/composer-env.sh ] && . /etc/profile.d/composer-env.sh'
for zshenv in /etc/zsh/zshenv /etc/zshenv; do
    [ -f "$zshenv" ] || continue
    grep -q -F -x -e "$line" "$zshenv" || printf '%s\n' "$line" >> "$zshenv"
done
