#!/usr/bin/env bash
# CPU time (user + system), wall time (min and median of N) and peak RSS of `iommu groups` on the same extracted
# snapshot, cold (page cache dropped before each run: needs root) and warm, for the native binary, optionally an
# earlier native binary (BASELINE=path, for before/after), the framework-dependent build and the classic bash loop
# over /sys/kernel/iommu_groups with `lspci -nns` per device. CPU time is the figure that depends on the program when
# the machine is shared; the load average is printed before and after each contender.
# usage: tools/ship/measure-cpu.sh [DEVICES]   (default 100; the generated machine of tools/ship/measure.sh)
# env: NATIVE (out/linux-x64/iommu), BASELINE (none), BASELINE_FD (an earlier framework-dependent iommu, none),
#      RUNS (30), COLD_RUNS (3), SKIP_SLOW=1 (no framework-dependent, no loop)
# needs: ./build.sh native, python3, pciutils (lspci)
set -euo pipefail
cd "$(dirname "$0")/../.."
NATIVE=${NATIVE:-out/linux-x64/iommu}
RUNS=${RUNS:-30}
COLD_RUNS=${COLD_RUNS:-3}
N=${1:-100}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
CT="python3 tools/ship/cputime.py"
[ -x "$NATIVE" ] || { echo "no $NATIVE: ./build.sh native first" >&2; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

dotnet build bench -c Release --nologo -v q >/dev/null
tools/ship/synth-tree.sh "$N" "$W/m"

echo "machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "generated machine: $(ls "$W/m/sys/bus/pci/devices" | wc -l) PCI functions, $(ls "$W/m/sys/kernel/iommu_groups" | wc -l) groups"
echo "pci.ids: $(ls -l /usr/share/misc/pci.ids 2>/dev/null | awk '{print $5 " bytes"}')"
echo "native: $(stat -c %s "$NATIVE") bytes; $("$NATIVE" --version | head -1)"
[ -n "${BASELINE:-}" ] && echo "baseline: $(stat -c %s "$BASELINE") bytes; $("$BASELINE" --version | head -1)"

contenders=("native|$NATIVE groups --source $W/m")
[ -n "${BASELINE:-}" ] && contenders+=("baseline native|$BASELINE groups --source $W/m")
contenders+=("native, tarball|$NATIVE groups --source $W/m.tar.gz" "native --version|$NATIVE --version")
if [ "${SKIP_SLOW:-0}" != 1 ]; then
	dotnet build src/IommuKit.Cli -c Release --nologo -v q -o "$W/fd" >/dev/null
	contenders+=("framework-dependent|$W/fd/iommu groups --source $W/m")
	[ -n "${BASELINE_FD:-}" ] && contenders+=("baseline framework-dependent|$BASELINE_FD groups --source $W/m")
	contenders+=("bash loop + lspci -nns|bash $W/classic.sh $W/m")
fi
for c in "${contenders[@]}"; do
	name=${c%%|*}; cmd=${c#*|}
	runs=$RUNS; case $name in bash*|*framework*) runs=$(( RUNS < 10 ? RUNS : 10 ));; esac
	echo "-- $name (load before: $(load))"
	# shellcheck disable=SC2086
	$CT --runs "$runs" --label "warm $name" -- $cmd
	if [ "$COLD_RUNS" -gt 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
		# shellcheck disable=SC2086
		$CT --cold --runs "$COLD_RUNS" --label "cold $name" -- $cmd
	fi
done
echo "load after: $(load)"
