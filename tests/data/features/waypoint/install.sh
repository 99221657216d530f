# No #! line and not executable: the spec runs it with sh.
set -eu
if [ "$ENABLEMARKER" = "true" ]; then mkdir -p /opt/marker && echo "$MARKER_NAME" > "/opt/marker/$MARKER_NAME"; fi
