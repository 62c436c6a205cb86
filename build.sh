#!/usr/bin/env bash
# Builds iommu as one native binary (no .NET needed where it runs), the NuGet packages, the man page and the shell
# completions, and installs them.
#
# usage: ./build.sh [TARGET...]        (no target: native)
#   native          native AOT iommu for this machine (linux-x64 or linux-arm64): out/<rid>/iommu, copied to ./iommu
#   native-x64      native AOT for linux-x64:   out/linux-x64/iommu
#   native-arm64    native AOT for linux-arm64: out/linux-arm64/iommu (cross-compiled on x64 with Debian's
#                   gcc-aarch64-linux-gnu toolchain and clang)
#   packages        out/packages/: IommuKit.<v>.nupkg + .snupkg (the library) and IommuKit.Tool.<v>.nupkg (the
#                   `dotnet tool`: dotnet tool install -g --add-source out/packages IommuKit.Tool)
#   extras          out/share/: man page iommu.1 (generated from the binary's --help) and bash/zsh/fish completions
#   install         native + extras, installed into $DESTDIR$PREFIX (PREFIX default /usr/local):
#                   bin/iommu, share/man/man1/iommu.1, share/bash-completion/completions/iommu,
#                   share/zsh/site-functions/_iommu, share/fish/vendor_completions.d/iommu.fish
#   uninstall       removes exactly those files
#   all             native, packages, extras
#   clean           removes out/ and ./iommu
# env: PREFIX (/usr/local), DESTDIR (empty), CONFIGURATION (Release), NO_INSTALL_DEPS=1 (never call apt-get)
#
# Needs the .NET 10 SDK, and for native builds clang (a Debian package; installed with apt-get when it is
# missing and this runs as root). zlib is linked statically from the .NET runtime pack (libz.a), so the binary
# needs no libz and the build no zlib1g-dev. Trimming and AOT warnings are errors: a warning fails the build.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
OUT=$ROOT/out
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
CONFIGURATION=${CONFIGURATION:-Release}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v dotnet >/dev/null 2>&1 || die "the .NET 10 SDK is required (https://dot.net, or Debian's dotnet-sdk-10.0)"

# The commit baked into `iommu --version`; "-dirty" when tracked files have uncommitted changes.
revision() {
	git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || return 0
	local rev; rev=$(git -C "$ROOT" rev-parse HEAD)
	git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || rev="$rev-dirty"
	echo "$rev"
}
REV=$(revision)
PROPS=(-c "$CONFIGURATION" --nologo -v:minimal -p:TreatWarningsAsErrors=true)
[ -n "$REV" ] && PROPS+=("-p:SourceRevisionId=$REV")

# apt_install PKG...: installs Debian packages when missing (as root, with apt-get), else says what to install.
apt_install() {
	local missing=()
	for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "${NO_INSTALL_DEPS:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "installing ${missing[*]} (Debian packages)"
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >&2 \
			|| die "apt-get could not install ${missing[*]}"
	else
		die "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
	fi
}

host_rid() {
	case "$(uname -m)" in
		x86_64) echo linux-x64 ;;
		aarch64|arm64) echo linux-arm64 ;;
		*) die "no native build for $(uname -m): use the dotnet tool (./build.sh packages)" ;;
	esac
}

# native RID: publishes the native AOT binary into out/RID/.
native() {
	local rid=$1
	command -v clang >/dev/null 2>&1 || apt_install clang
	if [ "$rid" != "$(host_rid)" ]; then
		[ "$rid" = linux-arm64 ] || die "cross-compiling to $rid is not supported here"
		command -v dpkg-query >/dev/null 2>&1 && apt_install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross llvm
		# The SDK passes --target=aarch64-linux-gnu to clang, which finds Debian's cross gcc (crt files, libgcc),
		# the arm64 C library in /usr/aarch64-linux-gnu and aarch64-linux-gnu-ld; llvm-objcopy strips the result.
	fi
	say "publishing native AOT iommu for $rid (commit ${REV:-unknown}); this takes a few minutes"
	rm -rf "$OUT/$rid"
	dotnet publish src/IommuKit.Cli -r "$rid" -p:PublishAot=true -o "$OUT/$rid" "${PROPS[@]}"
	# Only the binary and its separate debug symbols are shipped: drop the library's XML docs and PDB.
	find "$OUT/$rid" -maxdepth 1 -type f ! -name iommu ! -name iommu.dbg -delete
	say "built $OUT/$rid/iommu ($(du -h "$OUT/$rid/iommu" | cut -f1))"
}

native_host() {
	local rid; rid=$(host_rid)
	native "$rid"
	cp "$OUT/$rid/iommu" "$ROOT/iommu"
	say "./iommu is ready: try ./iommu groups"
}

packages() {
	rm -rf "$OUT/packages"
	dotnet pack src/IommuKit -o "$OUT/packages" "${PROPS[@]}"
	dotnet pack src/IommuKit.Cli -o "$OUT/packages" "${PROPS[@]}"
	ls -1 "$OUT/packages" >&2
}

# The host's native binary, built unless it is there already.
host_binary() {
	local rid; rid=$(host_rid)
	[ -x "$OUT/$rid/iommu" ] || native_host >&2
	echo "$OUT/$rid/iommu"
}

extras() {
	local bin; bin=$(host_binary)
	rm -rf "$OUT/share"
	mkdir -p "$OUT/share/man/man1" "$OUT/share/completions"
	tools/ship/manpage.sh "$bin" > "$OUT/share/man/man1/iommu.1"
	cp tools/ship/completions/iommu.bash tools/ship/completions/_iommu tools/ship/completions/iommu.fish "$OUT/share/completions/"
	say "man page and completions in $OUT/share"
}

# The files `install` puts under $DESTDIR$PREFIX, as "source destination" pairs.
install_list() {
	cat <<-EOF
	$OUT/$(host_rid)/iommu bin/iommu
	$OUT/share/man/man1/iommu.1 share/man/man1/iommu.1
	$OUT/share/completions/iommu.bash share/bash-completion/completions/iommu
	$OUT/share/completions/_iommu share/zsh/site-functions/_iommu
	$OUT/share/completions/iommu.fish share/fish/vendor_completions.d/iommu.fish
	EOF
}

install_files() {
	host_binary >/dev/null
	extras
	local dest=$DESTDIR$PREFIX
	install_list | while read -r src rel; do
		local mode=0644; [ "$rel" = bin/iommu ] && mode=0755
		install -D -m "$mode" "$src" "$dest/$rel"
		say "installed $dest/$rel"
	done
}

uninstall_files() {
	install_list | while read -r _ rel; do rm -f "$DESTDIR$PREFIX/$rel"; done
}

[ $# -eq 0 ] && set -- native
for target in "$@"; do
	case "$target" in
		native) native_host ;;
		native-x64) native linux-x64 ;;
		native-arm64) native linux-arm64 ;;
		packages) packages ;;
		extras) extras ;;
		install) install_files ;;
		uninstall) uninstall_files ;;
		all) native_host; packages; extras ;;
		clean) rm -rf "$OUT" "$ROOT/iommu" ;;
		-h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) die "unknown target '$target' (./build.sh --help)" ;;
	esac
done
