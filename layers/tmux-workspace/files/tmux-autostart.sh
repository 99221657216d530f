#!/bin/sh
# Make the devpod's tmux workspace (the seed's 8 windows) unless the session
# already exists, then stay in the foreground while it exists: supervisord
# sees a RUNNING program, and recreates the workspace if someone kills it.
# `tmux-autostart.sh vnc-status` prints what window 6 shows.
set -eu

conf=${COMPOSER_TMUX_CONF:-/etc/composer/options/tmux-workspace.json}
session=workspace
if [ -f "$conf" ]; then
    session=$(jq -r '.session' "$conf")
fi
: "${HOME:=$(getent passwd "$(id -un)" | cut -d: -f6)}"
export HOME
self=$(readlink -f "$0")
work=$HOME/workspace
[ -d "$work" ] || work=$HOME

if [ "${1:-}" = vnc-status ]; then
    echo "VNC desktop: display :1, port 5901 (map it with -p 5901:5901)"
    if [ -s "$HOME/.vnc/password.txt" ]; then
        echo "Password: generated at first start, in ~/.vnc/password.txt"
    else
        echo "Password: from the VNC_PASSWORD secret"
    fi
    supervisorctl status xvnc xfce4 2>/dev/null || true
    exit 0
fi

# Every window starts as a login shell and gets its command typed in, so
# quitting htop or a tail leaves a usable shell instead of closing the window.
run_in() {
    tmux send-keys -t "$1" "$2" Enter
}

# -t '=name' matches the session name exactly, not as a prefix.
if ! tmux has-session -t "=$session" 2>/dev/null; then
    tmux new-session -d -s "$session" -n Claude-Main -c "$work"
    tmux new-window -d -t "$session:1" -n Claude-Agent -c "$work"
    tmux new-window -d -t "$session:2" -n Services -c "$HOME"
    run_in "$session:2" 'watch -n 5 supervisorctl status'
    tmux new-window -d -t "$session:3" -n Development -c "$work"
    # Logs: one pane per log; tail -F follows files that appear later.
    tmux new-window -d -t "$session:4" -n Logs -c /var/log
    tmux split-window -d -t "$session:4" -h -c /var/log
    tmux split-window -d -t "$session:4.0" -v -c /var/log
    tmux split-window -d -t "$session:4.2" -v -c /var/log
    run_in "$session:4.0" 'tail -F /var/log/supervisord.log'
    run_in "$session:4.1" 'tail -F /var/log/sshd.log'
    run_in "$session:4.2" 'tail -F /var/log/management-api.log'
    run_in "$session:4.3" 'tail -F /var/log/xvnc.log /var/log/xfce4.log'
    tmux select-layout -t "$session:4" tiled
    tmux new-window -d -t "$session:5" -n System -c "$HOME"
    run_in "$session:5" htop
    tmux new-window -d -t "$session:6" -n VNC-Status -c "$HOME"
    run_in "$session:6" "$self vnc-status"
    tmux new-window -d -t "$session:7" -n SSH-Shell -c "$HOME"
    tmux select-window -t "$session:0"
    echo "tmux-autostart: created session $session"
else
    echo "tmux-autostart: session $session exists"
fi

while tmux has-session -t "=$session" 2>/dev/null; do
    sleep 10
done
echo "tmux-autostart: session $session is gone"
