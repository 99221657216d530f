#!/bin/sh
# tmux keeps its server socket in /tmp/tmux-<uid> and refuses a folder that is not the
# user's own with mode 0700. /tmp is everyone's: another user of the devpod (an AI user)
# who makes /tmp/tmux-<uid> before a restart would stop the workspace from starting. At
# every start, before any service runs, the folder is made the user's: whatever else is
# there goes (rm never follows a link), then mkdir — once the user's, the sticky /tmp keeps
# it theirs. Options from /etc/composer/options/tmux-workspace.json.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/options/tmux-workspace.json
[ -f "$conf" ] || exit 0
user=$(jq -r '.user' "$conf")
entry=$(user_entry "$user") || { log "no user $user: nothing to do"; exit 0; }
uid=${entry%% *}
rest=${entry#* }
gid=${rest%% *}
dir=$root/tmp/tmux-$uid
if [ -L "$dir" ] || [ ! -d "$dir" ] || [ "$(stat -c %u "$dir")" != "$uid" ] ||
    [ "$(stat -c %a "$dir")" != 700 ]; then
    if [ -e "$dir" ] || [ -L "$dir" ]; then
        log "removing $dir, which was not $user's own (uid $(stat -c %u "$dir"), mode $(stat -c %a "$dir"))"
        rm -rf "$dir"
    fi
    mkdir -m 0700 "$dir"
    chown -h "$uid:$gid" "$dir"
fi
