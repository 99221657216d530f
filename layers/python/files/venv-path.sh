# The shared venv first on a user's PATH; root keeps it last (the image's PATH), since
# members of the venv's group can put any program name into /opt/venv/bin.
if [ "$(id -u)" != 0 ]; then
    case ":$PATH:" in
        :/opt/venv/bin:*) ;;
        *) PATH=/opt/venv/bin:$(printf '%s' "$PATH" | sed 's#:/opt/venv/bin##g') ;;
    esac
    export PATH
fi
