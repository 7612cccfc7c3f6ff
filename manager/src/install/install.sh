#!/bin/sh
# Installs the Alien agent on this machine from the manager that served this script. The
# manager serves its own binary and its checksum: nothing is downloaded from anywhere else.
#
#   curl -fsSL <manager>/install | sh -s -- --token ax_dg_... [--name NAME] [--data-dir DIR]
#       [--ca-file FILE] [--no-start]
#
# Run with --help for the options and the environment it reads.
set -eu

BASE_URL='@BASE_URL@'
ARCH='@ARCH@'
UNIT_NAME=alien-agent.service

say() {
	printf '%s\n' "$*"
}

die() {
	printf 'alien agent install: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat <<EOF
Usage: curl -fsSL $BASE_URL/install | sh -s -- --token TOKEN [OPTIONS]

Installs alien from $BASE_URL and sets up the agent that runs this
machine's deployment. As root on a machine running systemd, the agent becomes the service
$UNIT_NAME; otherwise the command that runs it is printed.

Options:
  --token TOKEN    a deployment-group token (ax_dg_...) minted on the manager (required)
  --name NAME      the deployment's name in its group [default: the host name]
  --data-dir DIR   where the agent keeps its state [default: /var/lib/alien-agent as root,
                   ~/.local/share/alien-agent otherwise]
  --ca-file FILE   certificates (PEM) of the CA that signed an https manager's certificate,
                   when the system does not trust it: used for the downloads, and copied
                   to CONFIG_DIR/ca.pem for the agent (SYNC_CA_FILE)
  --no-start       install and configure, but do not start the service
  -h, --help       print this help

Environment:
  INSTALL_DIR       where alien is installed [default: /usr/local/bin when writable,
                    else ~/.local/bin]
  CONFIG_DIR        where the token file is written [default: /etc/alien-agent as root,
                    else ~/.config/alien-agent]
  SYSTEMD_UNIT_DIR  where the unit is written [default: /etc/systemd/system]
EOF
}

# `$1` needs a value and the arguments left are `$2`.
need_value() {
	[ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

# Paths end up in a systemd unit and in a printed command: only characters that need no
# quoting in either are taken.
check_path() {
	case $2 in
	/*) ;;
	*) die "$1 must be an absolute path: $2" ;;
	esac
	case $2 in
	*[!A-Za-z0-9._/-]*) die "$1 may hold only letters, digits, '.', '_', '/' and '-': $2" ;;
	esac
}

home() {
	[ -n "${HOME:-}" ] || die "HOME is not set: set INSTALL_DIR and CONFIG_DIR, and pass --data-dir"
	printf '%s' "$HOME"
}

# Prints what the manager answers at `$1`, trusting `CA_SOURCE` when given.
fetch() {
	if command -v curl >/dev/null 2>&1; then
		if [ -n "$CA_SOURCE" ]; then
			curl -fsSL --cacert "$CA_SOURCE" "$1" || die "cannot download $1"
		else
			curl -fsSL "$1" || die "cannot download $1"
		fi
	elif command -v wget >/dev/null 2>&1; then
		if [ -n "$CA_SOURCE" ]; then
			wget -q --ca-certificate="$CA_SOURCE" -O - "$1" || die "cannot download $1"
		else
			wget -q -O - "$1" || die "cannot download $1"
		fi
	else
		die "neither curl nor wget is installed"
	fi
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d ' ' -f 1
	elif command -v openssl >/dev/null 2>&1; then
		openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d ' ' -f 1
	else
		die "no SHA-256 tool found (sha256sum, openssl or shasum) to check the download with"
	fi
}

# Flushes a file before it is renamed into place, so that a crash leaves the old file or the
# whole new one. A sync that takes no file (old busybox) flushes everything.
flush() {
	sync "$1" 2>/dev/null || sync
}

# Writes the output of the command `$3...` to a hidden temporary file beside `$1`, with mode
# `$2`, flushed: `commit` renames it into place. The file is private until it has its mode
# (it may be the token).
stage() {
	PARTIAL="${1%/*}/.${1##*/}.new.$$"
	mode=$2
	shift 2
	(umask 077 && "$@" >"$PARTIAL")
	chmod "$mode" "$PARTIAL"
	flush "$PARTIAL"
}

commit() {
	mv -f "$PARTIAL" "$1"
	PARTIAL=''
	flush "${1%/*}"
}

@UNIT@

TOKEN=''
NAME=''
DATA_DIR=''
CA_SOURCE=''
CA_FILE=''
START=yes
while [ "$#" -gt 0 ]; do
	case $1 in
	--token) need_value "$1" "$#"; TOKEN=$2; shift 2 ;;
	--token=*) TOKEN=${1#--token=}; shift ;;
	--name) need_value "$1" "$#"; NAME=$2; shift 2 ;;
	--name=*) NAME=${1#--name=}; shift ;;
	--data-dir) need_value "$1" "$#"; DATA_DIR=$2; shift 2 ;;
	--data-dir=*) DATA_DIR=${1#--data-dir=}; shift ;;
	--ca-file) need_value "$1" "$#"; CA_SOURCE=$2; shift 2 ;;
	--ca-file=*) CA_SOURCE=${1#--ca-file=}; shift ;;
	--no-start) START=no; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

[ -n "$TOKEN" ] || die "a token is required: --token ax_dg_... (see --help)"
case $TOKEN in
*[!A-Za-z0-9_-]*) die "--token: that is not a token (tokens hold letters, digits, '_' and '-')" ;;
esac
case $NAME in
*[!A-Za-z0-9._-]*) die "--name may hold only letters, digits, '.', '_' and '-': $NAME" ;;
esac

system=$(uname -s)
[ "$system" = Linux ] || die "the agent runs on Linux, and this machine runs $system"
machine=$(uname -m)
[ "$machine" = "$ARCH" ] ||
	die "this manager serves alien for $ARCH, and this machine is $machine: install from a manager that runs on $machine"

if [ "$(id -u)" -eq 0 ]; then
	ROOT=yes
else
	ROOT=no
fi
if [ -n "${INSTALL_DIR:-}" ]; then
	BIN_DIR=$INSTALL_DIR
elif [ -w /usr/local/bin ]; then
	BIN_DIR=/usr/local/bin
else
	BIN_DIR="$(home)/.local/bin"
fi
if [ -n "${CONFIG_DIR:-}" ]; then
	TOKEN_DIR=$CONFIG_DIR
elif [ "$ROOT" = yes ]; then
	TOKEN_DIR=/etc/alien-agent
else
	TOKEN_DIR="$(home)/.config/alien-agent"
fi
if [ -z "$DATA_DIR" ]; then
	if [ "$ROOT" = yes ]; then
		DATA_DIR=/var/lib/alien-agent
	else
		DATA_DIR="$(home)/.local/share/alien-agent"
	fi
fi
UNIT_DIR=${SYSTEMD_UNIT_DIR:-/etc/systemd/system}
check_path INSTALL_DIR "$BIN_DIR"
check_path CONFIG_DIR "$TOKEN_DIR"
check_path --data-dir "$DATA_DIR"
check_path SYSTEMD_UNIT_DIR "$UNIT_DIR"
BIN=$BIN_DIR/alien
TOKEN_FILE=$TOKEN_DIR/token
if [ -n "$CA_SOURCE" ]; then
	[ -r "$CA_SOURCE" ] || die "--ca-file: cannot read $CA_SOURCE"
	grep -q -- '-----BEGIN CERTIFICATE-----' "$CA_SOURCE" ||
		die "--ca-file: $CA_SOURCE holds no PEM certificate"
	CA_FILE=$TOKEN_DIR/ca.pem
fi

SYSTEMD=no
if [ "$ROOT" = yes ] && [ -d /run/systemd/system ]; then
	SYSTEMD=yes
	for path in "$BIN_DIR" "$TOKEN_DIR" "$DATA_DIR"; do
		case $path/ in
		/home/* | /root/* | /run/user/*)
			die "the service cannot reach $path (its unit has ProtectHome=yes): choose a directory outside /home, /root and /run/user"
			;;
		esac
	done
fi

# The binary is downloaded next to where it goes, so that the rename that installs it is
# atomic and no other file system (a small /tmp) has to hold it; it is removed unless it
# matches the checksum and runs.
PARTIAL=''
cleanup() {
	if [ -n "$PARTIAL" ]; then
		rm -f "$PARTIAL"
	fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

say "Downloading alien ($ARCH) from $BASE_URL"
mkdir -p "$BIN_DIR"
stage "$BIN" 0600 fetch "$BASE_URL/install/alien"
checksum=$(fetch "$BASE_URL/install/alien.sha256")
expected=${checksum%% *}
case $expected in
'' | *[!0-9a-f]*) die "the manager's checksum is not a SHA-256: $checksum" ;;
esac
[ "${#expected}" -eq 64 ] || die "the manager's checksum is not a SHA-256: $checksum"
actual=$(sha256_of "$PARTIAL")
[ "$actual" = "$expected" ] ||
	die "the download does not match the manager's checksum (got $actual, expected $expected): nothing was installed"
chmod 0755 "$PARTIAL"
"$PARTIAL" --version >/dev/null 2>&1 ||
	die "the downloaded alien does not run on this machine (it needs a glibc as recent as the manager's machine has): nothing was installed"
commit "$BIN"
say "Installed $BIN"

if [ ! -d "$TOKEN_DIR" ]; then
	(umask 077 && mkdir -p "$TOKEN_DIR")
fi
stage "$TOKEN_FILE" 0600 printf '%s\n' "$TOKEN"
commit "$TOKEN_FILE"
say "Wrote the token to $TOKEN_FILE"
if [ -n "$CA_FILE" ]; then
	stage "$CA_FILE" 0644 cat "$CA_SOURCE"
	commit "$CA_FILE"
	say "Copied the CA's certificates to $CA_FILE"
fi

if [ "$SYSTEMD" = yes ]; then
	mkdir -p "$UNIT_DIR"
	stage "$UNIT_DIR/$UNIT_NAME" 0644 write_unit
	commit "$UNIT_DIR/$UNIT_NAME"
	say "Wrote $UNIT_DIR/$UNIT_NAME"
	systemctl daemon-reload
	if [ "$START" = yes ]; then
		systemctl enable "$UNIT_NAME"
		# A restart, not a start: when the agent already runs (this is an upgrade), it must
		# run the binary just installed.
		systemctl restart "$UNIT_NAME"
		say "The agent runs as $UNIT_NAME. Its log: journalctl -u $UNIT_NAME -f"
	else
		say "Not started (--no-start). Start it with: systemctl enable --now $UNIT_NAME"
	fi
	exit 0
fi

if [ "$ROOT" = yes ]; then
	say "systemd is not running here: no service was set up."
else
	say "Not running as root: no service was set up, and the agent will run its workloads as plain processes (an OCI runtime needs root)."
fi
command="SYNC_URL='$BASE_URL' SYNC_TOKEN_FILE='$TOKEN_FILE' DATA_DIR='$DATA_DIR'"
if [ -n "$NAME" ]; then
	command="$command OPERATOR_NAME='$NAME'"
fi
if [ -n "$CA_FILE" ]; then
	command="$command SYNC_CA_FILE='$CA_FILE'"
fi
say "Run the agent in the foreground with:"
say ""
say "    $command '$BIN' agent"
