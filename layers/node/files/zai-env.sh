# Sourced from zai-user's ~/.zshenv, ~/.profile and ~/.bashrc (composer node module).
# Points Claude Code at Z.AI's Anthropic-compatible API. The key and base URL
# come from ~/.config/zai/config.json, written at container start from secrets.
zai_config="$HOME/.config/zai/config.json"
if [ -r "$zai_config" ] && command -v jq >/dev/null 2>&1; then
    zai_key=$(jq -r '.api_key // empty' "$zai_config")
    zai_url=$(jq -r '.base_url // empty' "$zai_config")
    [ -n "$zai_key" ] && export ANTHROPIC_AUTH_TOKEN="$zai_key"
    [ -n "$zai_url" ] && export ANTHROPIC_BASE_URL="$zai_url"
    unset zai_key zai_url
fi
unset zai_config
