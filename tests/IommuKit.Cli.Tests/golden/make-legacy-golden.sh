#!/bin/sh
# Regenerates legacy-<machine>.txt from REAL pciutils (not from IommuKit): the kernel's groups of the oracle's
# expected.json joined with `lspci -nn` run over the extracted snapshot, using pci.ids.sample and no hwdb.
# Needs pciutils and python3. Run from this directory: sh make-legacy-golden.sh
set -e
ORACLE=../../fixtures/oracle
for exp in "$ORACLE"/*.expected.json; do
  name=$(basename "$exp" .expected.json)
  tmp=$(mktemp -d)
  tar xzf "$ORACLE/$name.tar.gz" -C "$tmp"
  lspci -A linux-sysfs -O sysfs.path="$tmp/sys/bus/pci" -O hwdb.disable=1 -i pci.ids.sample -nn > "$tmp/lspci.txt"
  python3 - "$exp" "$tmp/lspci.txt" > "legacy-$name.txt" <<'PY'
import json, sys
exp = json.load(open(sys.argv[1]))
lines = {l.split(' ', 1)[0]: l.rstrip('\n') for l in open(sys.argv[2])}
for g in sorted(exp["groups"], key=lambda g: g["id"]):
    for bdf in sorted(g["devices"]):
        short = bdf[5:] if bdf.startswith("0000:") else bdf
        print(f"IOMMU Group {g['id']} {lines[short]}")
PY
  rm -rf "$tmp"
done
