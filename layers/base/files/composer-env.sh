# The image's environment for login shells (written at start by the 05-login-env hook).
if [ -r /run/composer/login-env.sh ]; then
    . /run/composer/login-env.sh
fi
