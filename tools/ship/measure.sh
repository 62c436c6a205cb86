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

# The forum loop, as people paste it, with lspci reading the extracted tree instead of /sys.
cat > "$W/classic.sh" <<'SH'
root=$1
for g in $(ls "$root/sys/kernel/iommu_groups" | sort -n); do
	echo "IOMMU Group $g:"
	for d in "$root/sys/kernel/iommu_groups/$g/devices"/*; do
		echo -e "\t$(lspci -A linux-sysfs -O sysfs.path="$root/sys/bus/pci" -nns "${d##*/}")"
	done
done
SH

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
	dotnet run -c Release --no-build --project bench -- --write-machine "$n" "$W/m$n.tar.gz"
	mkdir -p "$W/m$n" && tar xzf "$W/m$n.tar.gz" -C "$W/m$n"
	# The generator writes config and vendor only; lspci also reads the id files sysfs derives from config space.
	python3 - "$W/m$n/sys/bus/pci/devices" <<'PY'
import os, sys
for bdf in os.listdir(sys.argv[1]):
    d = os.path.join(sys.argv[1], bdf)
    c = open(os.path.join(d, "config"), "rb").read()
    u16 = lambda o: c[o] | c[o + 1] << 8
    for name, text in (("vendor", "0x%04x" % u16(0)), ("device", "0x%04x" % u16(2)), ("revision", "0x%02x" % c[8]),
                       ("class", "0x%06x" % (c[9] | c[10] << 8 | c[11] << 16)),
                       ("subsystem_vendor", "0x%04x" % u16(0x2c)), ("subsystem_device", "0x%04x" % u16(0x2e))):
        if not os.path.exists(os.path.join(d, name)):
            open(os.path.join(d, name), "w").write(text + "\n")
PY
	measure "generated-$n" "$W/m$n"
done
mkdir -p "$W/real" && tar xzf tests/fixtures/oracle/g_k612_intel_mixed.tar.gz -C "$W/real"
measure g_k612_intel_mixed "$W/real"
