# Login shells on the console: the login banner (dropbear prints it for SSH logins), and kernel
# messages on the console only from warnings up, so that driver notices and service output do
# not overwrite the prompt (`dmesg` and `myelinctl log` keep them all).
if [ -z "${SSH_CONNECTION:-}" ] && [ "$(id -u)" = 0 ]; then
	dmesg -n 5 2>/dev/null
	[ -r /etc/motd ] && cat /etc/motd
fi
