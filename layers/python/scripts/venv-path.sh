#!/bin/sh
# zsh reads /etc/zsh/zshenv, not /etc/profile.d: give it the venv PATH line too (after
# the base module's line that loads the image's environment).
set -eu
line='[ -r /etc/profile.d/composer-venv.sh ] && . /etc/profile.d/composer-venv.sh'
for zshenv in /etc/zsh/zshenv /etc/zshenv; do
    [ -f "$zshenv" ] || continue
    grep -q -F -x -e "$line" "$zshenv" || printf '%s\n' "$line" >> "$zshenv"
done
