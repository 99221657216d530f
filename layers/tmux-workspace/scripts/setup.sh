#!/bin/sh
# Put the seed's ~/.config/tmux-autostart.sh in place for the workspace's user (a link,
# so the script stays in one place). The autostart script reads this module's options
# from /etc/composer/options/tmux-workspace.json.
set -eu
. "$COMPOSER_LIB"

user=$(composer_opt user)
home=$(composer_home "$user")
install -d -o "$user" -g "$(id -g "$user")" "$home/.config"
ln -sf /usr/local/lib/composer/tmux-workspace/tmux-autostart.sh "$home/.config/tmux-autostart.sh"
chown -h "$(composer_owner "$user")" "$home/.config/tmux-autostart.sh"
