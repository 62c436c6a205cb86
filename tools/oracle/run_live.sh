#!/bin/bash
# Boots Debian's stock kernel under QEMU (TCG, q35, Intel VT-d) with the native iommu binary in a busybox initramfs,
# runs live.sh there (snapshot, groups, set-type --apply cases) and leaves the console log and what the host makes
# of it in OUTDIR:
#   live.log                the raw serial console (capture facts, then =====LIVE BEGIN=====...=====LIVE END=====)
#   live.cmd                the exact QEMU command line
#   capture/live.tar.gz     the capture scripts' snapshot of the same boot (log2snapshot.py), and live.expected.json
#   iommu-snapshot.tar.gz   the tarball `iommu snapshot` wrote inside the guest (decoded from the console)
# usage: tools/oracle/run_live.sh IOMMU_BIN [OUTDIR]
#   IOMMU_BIN   the native binary (./build.sh native gives out/linux-x64/iommu)
#   OUTDIR      default $ORACLE_OUT/live ($ORACLE_OUT defaults to ./out/oracle)
# env: KERNEL_ROOT   an extracted linux-image package (boot/vmlinuz-*, lib/modules/*); default: Debian's current
#                    linux-image-amd64 dependency, downloaded with apt-get download into $ORACLE_OUT/kernel and
#                    extracted with dpkg-deb (nothing is installed on this machine)
#      SETTYPE       the set-type cases (default: a bound singleton, a driver-less singleton, a multi-device group)
#      TIMEOUT       seconds for the boot (default 180)
#      FETCH_ONLY=1  only download and extract the kernel package, then print KERNEL_ROOT
# needs: qemu-system-x86, busybox-static, cpio, kmod, python3, apt-get/dpkg-deb for the kernel download.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IOMMU_BIN=$(realpath "${1:?usage: run_live.sh IOMMU_BIN [OUTDIR]}")
export ORACLE_OUT=${ORACLE_OUT:-./out/oracle}
mkdir -p "$ORACLE_OUT"
ORACLE_OUT=$(cd "$ORACLE_OUT" && pwd)
OUTDIR=${2:-$ORACLE_OUT/live}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# The kernel: Debian's linux-image package, extracted, never installed.
if [ -z "${KERNEL_ROOT:-}" ]; then
	KERNEL_ROOT=$ORACLE_OUT/kernel/root
	if ! ls "$KERNEL_ROOT"/boot/vmlinuz-* >/dev/null 2>&1; then
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		[ -n "$pkg" ] || { echo "run_live.sh: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2; exit 2; }
		rm -rf "$ORACLE_OUT/kernel"; mkdir -p "$ORACLE_OUT/kernel"
		(cd "$ORACLE_OUT/kernel" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
		deb=$(ls "$ORACLE_OUT"/kernel/*.deb 2>/dev/null | head -n1)
		[ -n "$deb" ] || { echo "run_live.sh: apt-get download $pkg failed" >&2; exit 2; }
		dpkg-deb -x "$deb" "$KERNEL_ROOT"
		rm -f "$deb"
	fi
fi
# FETCH_ONLY=1: stop once the kernel is there (.ci/run fetches it before the tests, to tell "cannot be had" apart).
[ "${FETCH_ONLY:-0}" = 1 ] && { echo "$KERNEL_ROOT"; exit 0; }
KVER=$(ls "$KERNEL_ROOT/lib/modules" | sort -V | tail -n1)
KERNEL=$(ls "$KERNEL_ROOT"/boot/vmlinuz-"$KVER")
# The package's modules.dep is made by depmod at install time: make it for the extracted tree.
[ -s "$KERNEL_ROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$KERNEL_ROOT" "$KVER"

# e1000e and virtio-net get drivers; the rtl8139 stays driver-less (8139too is not bundled); vfio-pci is there for
# binding tests; virtio_blk (the swap disk), nvme (the SR-IOV card whose PF vfio-pci refuses) and the USB keyboard's
# xhci_pci, usbhid and hid_generic give the guest host uses and a bind that fails mid-way.
MODS="virtio_pci virtio_net virtio_blk e1000e nvme xhci_pci usbhid hid_generic pci-stub vfio-pci" SUFFIX=-live IOMMU_BIN=$IOMMU_BIN \
	"$HERE/build_initramfs.sh" "$KVER" "$KERNEL_ROOT" "$ORACLE_OUT" >&2

# Topology "E" of the capture suite (topologies.sh): three ACS root ports with e1000e / virtio-net / rtl8139 and a
# multifunction virtio-net pair on pcie.0. 01:00.0 is a bound singleton, 03:00.0 a driver-less singleton, 00:04.0 a
# two-device group with both drivers bound. Added for the bind tests and host uses (issue 10): a fourth root port with
# QEMU's nvme and two SR-IOV VFs enabled at boot (04:00.0, VFs 04:00.1-2, driver-less), a virtio-blk disk at 00:0a.0
# (live.sh makes it the swap), a USB keyboard on an xhci at 00:0b.0; live.sh puts the default route on 02:00.0.
rm -f "$OUTDIR/swap.img"; truncate -s 8M "$OUTDIR/swap.img"
SETTYPE=${SETTYPE:-01:00.0/identity,03:00.0/DMA,00:04.0/identity}
# no_timer_check: on a loaded host TCG is too slow for the kernel's IO-APIC timer check, which then panics ("timer
# doesn't work through Interrupt-remapped IO-APIC") and run_topo.sh boots again; the check is irrelevant here.
LOGDIR=$OUTDIR KERNEL=$KERNEL INITRD=$ORACLE_OUT/initramfs-$KVER-live.cpio.gz KVER=$KVER TIMEOUT=${TIMEOUT:-180} \
	"$HERE/run_topo.sh" live "oracle.live=1 oracle.settype=$SETTYPE oracle.sriov=0000:04:00.0/2 oracle.dmesg=none no_timer_check" \
	-device pcie-root-port,id=rp1,addr=06.0,chassis=1,port=1 -device e1000e,bus=rp1 \
	-device pcie-root-port,id=rp2,addr=07.0,chassis=2,port=2 -device virtio-net-pci,bus=rp2 \
	-device pcie-root-port,id=rp3,addr=08.0,chassis=3,port=3 -device rtl8139,bus=rp3 \
	-device virtio-net-pci,addr=04.0,multifunction=on -device virtio-net-pci,addr=04.1 \
	-device pcie-root-port,id=rp4,addr=09.0,chassis=4,port=4 -device nvme-subsys,id=subsys0 \
	-device nvme,serial=deadbeef,subsys=subsys0,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,bus=rp4 \
	-drive if=none,id=swap,file="$OUTDIR/swap.img",format=raw -device virtio-blk-pci,drive=swap,addr=0a.0 \
	-device qemu-xhci,addr=0b.0 -device usb-kbd >&2

LOG=$OUTDIR/live.log
grep -q '=====LIVE END=====' "$LOG" || { echo "run_live.sh: no =====LIVE END===== in $LOG" >&2; exit 1; }
rm -rf "$OUTDIR/capture"
python3 "$HERE/log2snapshot.py" "$LOG" -o "$OUTDIR/capture" --name live >&2
tr -d '\r' < "$LOG" | sed -n 's/^LIVE_SNAPSHOT_B64 //p' | base64 -d > "$OUTDIR/iommu-snapshot.tar.gz"
echo "$OUTDIR"
