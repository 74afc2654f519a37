#!/bin/sh
# SSH on a Myelin device, set up at build time (called by post-build.sh):
#   board/common/ssh-keys.sh <TARGET_DIR>
#
# - Installs the authorized public keys the build names into /etc/myelin/ssh/authorized_keys and
#   prints each one, with a warning when there is none (then no one can log in over SSH).
#   The keys come from BR2_MYELIN_SSH_AUTHORIZED_KEYS in Buildroot's .config (BR2_CONFIG), else
#   from MYELIN_SSH_AUTHORIZED_KEYS; unset, the build host's ~/.ssh/id_*.pub, as Nerves does.
#   Entries are separated by spaces: a key file (shell patterns allowed, a leading ~ is $HOME)
#   or a key itself, "<type> <base64>" (e.g. ssh-ed25519 AAAA...).
# - Keeps dropbear's state on /data, since the root filesystem is read-only: /etc/dropbear (where
#   `dropbear -R` writes the host keys it generates; Buildroot points it at /var/run, a tmpfs,
#   which would change the host key at every boot) and /root/.ssh both lead to /data/myelin/ssh.
#   There, authorized_keys holds the built-in keys (libexec/myelin-dropbear adds them at each
#   start) and those added at run time (`myelinctl ssh add-key`).
# - Installs that start wrapper only when the image has dropbear, so init.toml's optional
#   dropbear service is skipped on images without it.
set -eu

die() { echo "post-build: ssh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 <TARGET_DIR>"
TARGET_DIR=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SSH_STATE=/data/myelin/ssh

# The configured entries: from .config when Buildroot runs us (empty there means none).
if [ -n "${BR2_CONFIG:-}" ] && [ -f "$BR2_CONFIG" ]; then
	entries=$(sed -n 's/^BR2_MYELIN_SSH_AUTHORIZED_KEYS="\(.*\)"$/\1/p' "$BR2_CONFIG")
else
	# shellcheck disable=SC2088 # the ~ is expanded below, like the Kconfig default's
	entries=${MYELIN_SSH_AUTHORIZED_KEYS-'~/.ssh/id_*.pub'}
fi

out=$TARGET_DIR/etc/myelin/ssh/authorized_keys
mkdir -p "$(dirname "$out")"
: > "$out.tmp"
n=0

# Checks one public key line and appends it. $2 names where it came from, for messages.
add_key() {
	line=$1 from=$2
	set -f
	# shellcheck disable=SC2086 # split the line into type, key and comment
	set -- $line
	set +f
	[ $# -ge 2 ] || die "$from: not a public key (expected '<type> <base64> [comment]'): $line"
	case "$1" in
		ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) ;;
		sk-ssh-ed25519@openssh.com|sk-ecdsa-sha2-nistp256@openssh.com) ;;
		-----BEGIN*) die "$from is a private key; name the .pub file" ;;
		*) die "$from: unknown key type '$1' (expected ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*)" ;;
	esac
	case "$2" in
		*[!A-Za-z0-9+/=]*|'') die "$from: the key of type $1 is not base64: $2" ;;
	esac
	if grep -qF -- "$1 $2" "$out.tmp"; then
		return 0
	fi
	printf '%s\n' "$line" >> "$out.tmp"
	n=$((n + 1))
	type=$1 blob=$2
	shift 2
	# The end of the key tells keys of one type apart (their beginnings are all alike).
	echo "post-build: ssh: authorized key $n: $type ...${blob#"${blob%????????????}"}${*:+ ($*)} from $from"
}

add_file() {
	file=$1
	[ -f "$file" ] || die "authorized key file $file does not exist"
	lineno=0
	while IFS= read -r line || [ -n "$line" ]; do
		lineno=$((lineno + 1))
		case "$line" in ''|'#'*) continue ;; esac
		add_key "$line" "$file:$lineno"
	done < "$file"
}

set -f
# shellcheck disable=SC2086 # entries are space-separated (patterns expand below, one by one)
set -- $entries
set +f
while [ $# -gt 0 ]; do
	entry=$1
	shift
	case "$entry" in
		ssh-*|ecdsa-*|sk-*)
			[ $# -gt 0 ] || die "key '$entry' in the configured keys has no base64 part"
			add_key "$entry $1" "the configuration"
			shift
			;;
		*)
			case "$entry" in
				\~/*) entry=$HOME/${entry#\~/} ;;
				\$\(HOME\)/*) entry=$HOME/${entry#\$(HOME)/} ;;
			esac
			matched=0
			for file in $entry; do
				# An unmatched pattern stays as it is: no such file.
				[ -e "$file" ] || continue
				matched=1
				add_file "$file"
			done
			if [ "$matched" = 0 ]; then
				case "$entry" in
					*[*?[]*) echo "post-build: ssh: no file matches $entry" ;;
					*) die "authorized key file $entry does not exist" ;;
				esac
			fi
			;;
	esac
done
mv "$out.tmp" "$out"
chmod 0644 "$out"
if [ "$n" -eq 0 ]; then
	echo "post-build: ssh: warning: no authorized SSH key; no one can log in over SSH" \
		"(set BR2_MYELIN_SSH_AUTHORIZED_KEYS, or add keys at run time with 'myelinctl ssh add-key')" >&2
fi

# dropbear's state on /data.
rm -rf "$TARGET_DIR/etc/dropbear" "$TARGET_DIR/root/.ssh"
ln -s "$SSH_STATE" "$TARGET_DIR/etc/dropbear"
mkdir -p "$TARGET_DIR/root"
ln -s "$SSH_STATE" "$TARGET_DIR/root/.ssh"
if [ -x "$TARGET_DIR/usr/sbin/dropbear" ]; then
	install -D -m 0755 "$HERE/libexec/myelin-dropbear" "$TARGET_DIR/usr/libexec/myelin-dropbear"
else
	rm -f "$TARGET_DIR/usr/libexec/myelin-dropbear"
fi
