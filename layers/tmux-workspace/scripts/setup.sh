#!/bin/sh
# Record the options for the autostart script and put the seed's
# ~/.config/tmux-autostart.sh in place (a link, so the script stays in one place).
set -eu

mkdir -p /etc/composer
jq '{session}' /run/composer/options.json > /etc/composer/tmux-workspace.json
chmod 0644 /etc/composer/tmux-workspace.json

if id devuser > /dev/null 2>&1 && [ -d /home/devuser ]; then
    install -d -o devuser -g "$(id -g devuser)" /home/devuser/.config
    ln -sf /usr/local/lib/composer/tmux-workspace/tmux-autostart.sh \
        /home/devuser/.config/tmux-autostart.sh
    chown -h devuser: /home/devuser/.config/tmux-autostart.sh
fi
