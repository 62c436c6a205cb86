#!/usr/bin/env bash
# Writes what the measurement scripts (measure.sh, measure-cpu.sh) run on: a generated N-function machine as a
# snapshot tarball DIR.tar.gz, extracted into DIR with the id files lspci reads and the uevent a live sysfs has,
# and the classic forum loop over /sys/kernel/iommu_groups with `lspci -nns` per device as WORKDIR/classic.sh ROOT.
# usage: tools/ship/synth-tree.sh N DIR   (run from the repository root, after `dotnet build bench -c Release`)
set -euo pipefail
n=$1 dir=$2
dotnet run -c Release --no-build --project bench -- --write-machine "$n" "$dir.tar.gz"
mkdir -p "$dir" && tar xzf "$dir.tar.gz" -C "$dir"
# The generator writes config and vendor only; lspci also reads the id files sysfs derives from config space.
python3 - "$dir/sys/bus/pci/devices" <<'PY'
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
    # uevent as drivers/pci/pci-driver.c pci_uevent (after the driver core's DRIVER=) prints it for the same ids.
    ids = {n: int(open(os.path.join(d, n)).read(), 16) for n in ("vendor", "device", "subsystem_vendor", "subsystem_device", "class")}
    drv = os.path.join(d, "driver")
    lines = (["DRIVER=" + os.path.basename(os.readlink(drv))] if os.path.islink(drv) else []) + [
        "PCI_CLASS=%04X" % ids["class"], "PCI_ID=%04X:%04X" % (ids["vendor"], ids["device"]),
        "PCI_SUBSYS_ID=%04X:%04X" % (ids["subsystem_vendor"], ids["subsystem_device"]), "PCI_SLOT_NAME=" + bdf,
        "MODALIAS=pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X" % (ids["vendor"], ids["device"], ids["subsystem_vendor"],
            ids["subsystem_device"], ids["class"] >> 16, ids["class"] >> 8 & 0xff, ids["class"] & 0xff)]
    if not os.path.exists(os.path.join(d, "uevent")):
        open(os.path.join(d, "uevent"), "w").write("\n".join(lines) + "\n")
PY
# The forum loop, as people paste it, with lspci reading the extracted tree instead of /sys.
cat > "$(dirname "$dir")/classic.sh" <<'SH'
root=$1
for g in $(ls "$root/sys/kernel/iommu_groups" | sort -n); do
	echo "IOMMU Group $g:"
	for d in "$root/sys/kernel/iommu_groups/$g/devices"/*; do
		echo -e "\t$(lspci -A linux-sysfs -O sysfs.path="$root/sys/bus/pci" -nns "${d##*/}")"
	done
done
SH
