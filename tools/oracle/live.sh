#!/bin/sh
# Live-kernel checks of the native iommu binary, run by the oracle init (oracle.live=1) inside the booted guest after
# the capture facts were printed. Everything goes to the serial console between =====LIVE BEGIN===== and
# =====LIVE END=====; the host (tests/IommuKit.Cli.Tests/LiveKernelTests.cs, tools/oracle/run_live.sh) reads it.
#
# Kernel command-line switches:
#   oracle.settype=BDF/TYPE[,BDF/TYPE...]   cases for `iommu set-type GROUP TYPE --apply`, GROUP being the group of
#                                            BDF at that moment; run in order
#
# Line format (one fact per line, prefixed so that console noise cannot be mistaken for output):
#   LIVE_VERSION <iommu --version>
#   LIVE_LIB <path>                         every shared library in the initramfs (what build_initramfs.sh copied
#                                            for the binary: if it needed another one at run time, it would fail)
#   LIVE_SNAPSHOT rc=<rc> bytes=<n>          then LIVE_SNAPSHOT_B64 <base64 line>... of the tarball
#   LIVE_CMD <name> rc=<rc>                  then LIVE_OUT <name> <line>... (stdout) and LIVE_ERR <name> <line>...
#   LIVE_CASE <i> bdf=<BDF> group=<n> value=<v>
#   LIVE_STATE <i> before|after type=<t> drivers=<BDF>=<drv|->,...
#   LIVE_RAW <i> rc=<rc> after=<t> result="<OK|shell message>"   a plain `echo TYPE > type`: the kernel's answer
#   LIVE_RESTORE <i> rc=<rc> type=<t>        the raw write succeeded: the old type was written back before --apply
#   LIVE_SETUP <what> <key=value...>         what the host was given to use before the snapshot (swap, default route,
#                                            the USB keyboard), so that the binary has host uses to find (issue 10)
#   LIVE_DRIVERS <tag> <BDF>=<drv|->,...     drivers of the bind cases' devices at a moment (tag: before/after a command)
export PATH=/bin:/sbin
IOMMU=/bin/iommu

opt() {
	for w in $(cat /proc/cmdline); do
		case "$w" in "oracle.$1="*) echo "${w#*=}"; return ;; esac
	done
	echo "$2"
}

# run NAME CMD...: runs an iommu command, prints its exit code, stdout and stderr with prefixes.
run() {
	name=$1; shift
	"$@" > /tmp/out.txt 2> /tmp/err.txt
	rc=$?
	echo "LIVE_CMD $name rc=$rc"
	sed "s/^/LIVE_OUT $name /" /tmp/out.txt
	sed "s/^/LIVE_ERR $name /" /tmp/err.txt
}

# drivers TAG BDF...: the driver of each device now.
drivers() {
	tag=$1; shift
	out=
	for d in "$@"; do
		drv=-; [ -e /sys/bus/pci/devices/$d/driver ] && drv=$(basename "$(readlink /sys/bus/pci/devices/$d/driver)")
		out="$out${out:+,}$d=$drv"
	done
	echo "LIVE_DRIVERS $tag $out"
}

group_of() { basename "$(readlink /sys/bus/pci/devices/$1/iommu_group)"; }

# state I WHEN GROUP: the type file and the driver of every member of the group.
state() {
	g=/sys/kernel/iommu_groups/$3
	drivers=
	for d in $(ls $g/devices); do
		drv=-; [ -e /sys/bus/pci/devices/$d/driver ] && drv=$(basename "$(readlink /sys/bus/pci/devices/$d/driver)")
		drivers="$drivers${drivers:+,}$d=$drv"
	done
	echo "LIVE_STATE $1 $2 type=$(cat $g/type) drivers=$drivers"
}

echo "=====LIVE BEGIN====="
if [ ! -x $IOMMU ]; then
	echo "LIVE_NO_BINARY"
else
	echo "LIVE_VERSION $($IOMMU --version 2>&1)"
	find / -xdev -name '*.so*' \( -type f -o -type l \) | sort | sed 's/^/LIVE_LIB /'

	# 0. Host uses (issue 10): swap on the virtio-blk disk at 00:0a.0, a default route on the virtio-net at 02:00.0, and
	# wait for the USB keyboard on the xhci at 00:0b.0 (USB enumerates after the modules are loaded).
	blk=$(ls /sys/bus/pci/devices/0000:00:0a.0/virtio*/block 2>/dev/null | head -n1)
	if [ -n "$blk" ]; then
		mkswap /dev/$blk > /dev/null 2>&1; swapon /dev/$blk; echo "LIVE_SETUP swap dev=/dev/$blk rc=$?"
	fi
	ifc=$(ls /sys/bus/pci/devices/0000:02:00.0/virtio*/net 2>/dev/null | head -n1)
	if [ -n "$ifc" ]; then
		ip link set "$ifc" up && ip route add default dev "$ifc"; echo "LIVE_SETUP route dev=$ifc rc=$?"
	fi
	i=0
	while [ $i -lt 60 ]; do
		kbd=$(for n in /sys/class/input/input*; do case "$(realpath $n)" in */usb*) cat $n/name ;; esac; done 2>/dev/null | head -n1)
		[ -n "$kbd" ] && break
		sleep 0.25; i=$((i + 1))
	done
	echo "LIVE_SETUP keyboard name=\"$kbd\""

	# 1. snapshot of the live host, sent back as base64.
	$IOMMU snapshot -o /tmp/live.tar.gz > /tmp/out.txt 2> /tmp/err.txt
	rc=$?
	echo "LIVE_SNAPSHOT rc=$rc bytes=$(wc -c < /tmp/live.tar.gz 2>/dev/null || echo 0)"
	sed "s/^/LIVE_ERR snapshot /" /tmp/err.txt
	[ -f /tmp/live.tar.gz ] && base64 /tmp/live.tar.gz | sed 's/^/LIVE_SNAPSHOT_B64 /'

	# 2. groups of the live host, text and JSON, groups of the snapshot just taken, and two verdicts.
	run groups $IOMMU groups
	run groups-json $IOMMU groups --json
	run groups-snapshot $IOMMU groups --source /tmp/live.tar.gz
	# vfio-check computes fingerprints too (the platform SHA-256 once aborted it here without libssl): a verdict
	# for the e1000e (bound to a DMA API driver: not viable, exit 1) and for the driver-less rtl8139 (exit 0).
	run vfio-check-bound $IOMMU vfio-check 0000:01:00.0
	run vfio-check-unbound $IOMMU vfio-check 0000:03:00.0

	# 3. set-type cases: the dry run, the kernel's answer to the plain write, then --apply.
	i=0
	for c in $(opt settype "" | tr ',' ' '); do
		i=$((i + 1))
		bdf=${c%/*}; value=${c##*/}
		case "$bdf" in ????:*) ;; *) bdf=0000:$bdf ;; esac
		if [ ! -e /sys/bus/pci/devices/$bdf/iommu_group ]; then echo "LIVE_CASE $i bdf=$bdf group=- value=$value"; continue; fi
		grp=$(group_of $bdf)
		echo "LIVE_CASE $i bdf=$bdf group=$grp value=$value"
		state $i before $grp
		run "dry-$i" $IOMMU set-type "$grp" "$value" --json
		tf=/sys/kernel/iommu_groups/$grp/type
		old=$(cat $tf)
		err=$( (echo "$value" > $tf) 2>&1 )
		rc=$?
		echo "LIVE_RAW $i rc=$rc after=$(cat $tf) result=\"${err:-OK}\""
		if [ "$(cat $tf)" != "$old" ]; then
			err=$( (echo "$old" > $tf) 2>&1 ); rc=$?
			echo "LIVE_RESTORE $i rc=$rc type=$(cat $tf)"
		fi
		run "apply-$i" $IOMMU set-type "$grp" "$value" --apply --yes --json
		state $i after $grp
	done
	# 4. bind --apply / unbind --apply of the e1000e's group (issue 10/11): to vfio-pci and back to e1000e.
	# Host uses: vfio-check names them; bind --apply refuses the default route's NIC (nothing written).
	run vfio-check-swap $IOMMU vfio-check 0000:00:0a.0
	run vfio-check-route $IOMMU vfio-check 0000:02:00.0
	run vfio-check-keyboard $IOMMU vfio-check 0000:00:0b.0
	drivers held-before 0000:02:00.0
	run bind-held $IOMMU bind 0000:02:00.0 --apply --yes
	drivers held-after 0000:02:00.0
	grp=$(group_of 0000:01:00.0)
	echo "LIVE_BIND_GROUP $grp"
	drivers bind-before 0000:01:00.0
	run bind-apply $IOMMU bind --group "$grp" --apply --yes --json
	drivers bind-after 0000:01:00.0
	run unbind-apply $IOMMU unbind --group "$grp" --apply --yes --json
	drivers unbind-after 0000:01:00.0

	# 5. A failure mid-way, restored: bind the nvme's VF 04:00.1 takes the card's PF 04:00.0 and other VF with it;
	# the VF binds, then vfio-pci refuses the PF because SR-IOV is enabled on it (vfio_pci_core_register_device:
	# "Cannot bind to PF with SR-IOV enabled", -EBUSY), and everything touched must be put back.
	drivers fail-before 0000:04:00.0 0000:04:00.1 0000:04:00.2
	run bind-fail $IOMMU bind 0000:04:00.1 --apply --yes --json
	drivers fail-after 0000:04:00.0 0000:04:00.1 0000:04:00.2
	echo "LIVE_OVERRIDE fail-after $(for d in 0000:04:00.0 0000:04:00.1 0000:04:00.2; do printf '%s=%s,' $d "$(cat /sys/bus/pci/devices/$d/driver_override)"; done)"
fi
echo "=====LIVE END====="
