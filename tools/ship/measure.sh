#!/usr/bin/env bash
# Measures the shipped binary for docs/PERFORMANCE.md ("The shipped binary"): size, and wall time and peak RSS of
# `iommu groups` on an extracted snapshot for the native binary, the framework-dependent one and the classic bash
# loop over /sys/kernel/iommu_groups with `lspci -nns` per device (lspci reading the same extracted tree).
# usage: tools/ship/measure.sh [DEVICES...]   (default: 100; plus the 31-device real-kernel capture g_k612_intel_mixed)
# needs: ./build.sh native (out/linux-x64/iommu), hyperfine, pciutils, GNU time (/usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/../.."
NATIVE=${NATIVE:-out/linux-x64/iommu}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
[ -x "$NATIVE" ] || { echo "no $NATIVE: ./build.sh native first" >&2; exit 1; }
dotnet build src/IommuKit.Cli -c Release --nologo -v q -o "$W/fd" >/dev/null
dotnet build bench -c Release --nologo -v q >/dev/null
FD=$W/fd/iommu

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "native binary: $(stat -c %s "$NATIVE") bytes ($(du -h "$NATIVE" | cut -f1)); $("$NATIVE" --version)"


measure() {  # NAME ROOT
	local name=$1 root=$2 n
	n=$(ls "$root/sys/bus/pci/devices" | wc -l)
	echo
	echo "== $name: $n PCI functions, $(ls "$root/sys/kernel/iommu_groups" | wc -l) groups"
	hyperfine -N -i --warmup 3 --runs 30 --export-json "$W/$name.json" --export-markdown "$W/$name.md" \
		-n native "$NATIVE groups --source $root" \
		-n framework-dependent "$FD groups --source $root" >/dev/null 2>&1 || true
	hyperfine -N -i --warmup 1 --runs 5 --export-json "$W/$name-classic.json" --export-markdown "$W/$name-classic.md" \
		-n "bash loop + lspci -nns" "bash $W/classic.sh $root" >/dev/null 2>&1 || true
	cat "$W/$name.md"; tail -n +3 "$W/$name-classic.md"
	# Wall time suffers first when the machine is shared; CPU time (user + system) much less.
	python3 - "$W/$name.json" "$W/$name-classic.json" <<'PY'
import json, statistics, sys
for f in sys.argv[1:]:
    for r in json.load(open(f))["results"]:
        cpu = [u + s for u, s in zip(r["user"] if isinstance(r["user"], list) else [], r["system"] if isinstance(r["system"], list) else [])]
        print("%-24s wall min %7.1f ms  median %7.1f ms   cpu (user+sys) mean %7.1f ms" % (r["command"], min(r["times"]) * 1e3, statistics.median(r["times"]) * 1e3, (r["user"] + r["system"]) * 1e3 if not cpu else statistics.mean(cpu) * 1e3))
PY
	for what in native framework-dependent classic; do
		case $what in
			native) cmd=("$NATIVE" groups --source "$root") ;;
			framework-dependent) cmd=("$FD" groups --source "$root") ;;
			classic) cmd=(bash "$W/classic.sh" "$root") ;;
		esac
		/usr/bin/time -v -o "$W/time.txt" "${cmd[@]}" >/dev/null 2>&1 || true
		rss=$(awk -F: '/Maximum resident/ { gsub(/ /, "", $2); print $2 }' "$W/time.txt")
		# GNU time reports the largest single process of the tree for the loop (one lspci at a time)
		echo "peak RSS $what: ${rss} KiB"
	done
}

for n in "${@:-100}"; do
	tools/ship/synth-tree.sh "$n" "$W/m$n"
	measure "generated-$n" "$W/m$n"
done
mkdir -p "$W/real" && tar xzf tests/fixtures/oracle/g_k612_intel_mixed.tar.gz -C "$W/real"
measure g_k612_intel_mixed "$W/real"
