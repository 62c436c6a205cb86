#!/bin/bash
# Rebuild every machine that has a committed console log (tools/oracle/logs/NAME.log.gz)
# and require the result to be byte-identical to the committed fixture in
# tests/fixtures/oracle/, and check_snapshot.py to pass. Also checks that the checker
# itself notices a tampered tarball. Needs only python3 and gzip; no QEMU.
# usage: verify_fixtures.sh [name-regex]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=$(cd "$HERE/../../tests/fixtures/oracle" && pwd)
F=${1:-.}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
n_ok=0
for gz in "$HERE"/logs/*.log.gz; do
	name=$(basename "$gz" .log.gz)
	[[ $name =~ $F ]] || continue
	gzip -dc "$gz" > "$W/$name.log"
	python3 "$HERE/log2snapshot.py" -o "$W" "$W/$name.log" > /dev/null
	for ext in tar.gz expected.json; do
		cmp -s "$W/$name.$ext" "$FIX/$name.$ext" || { echo "DIFFERS $name.$ext (rebuilt from its log)"; exit 1; }
	done
	python3 "$HERE/check_snapshot.py" --expected "$FIX/$name.expected.json" "$FIX/$name.tar.gz" "$W/$name.log" > /dev/null \
		|| { echo "CHECK FAILED $name"; exit 1; }
	n_ok=$((n_ok + 1))
	last=$name
done
[ "$n_ok" -gt 0 ] || { echo "no logs matched"; exit 1; }
# The checker must fail on a snapshot that no longer matches its log: drop one member.
python3 - "$FIX/$last.tar.gz" "$W/tampered.tar.gz" <<'EOF'
import gzip, io, sys, tarfile
src = tarfile.open(sys.argv[1], "r:gz")
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
    for ti in src.getmembers():
        if ti.name.endswith("/class") and not getattr(sys, "_dropped", False):
            sys._dropped = True
            continue
        out.addfile(ti, src.extractfile(ti) if ti.isfile() else None)
with gzip.GzipFile(filename="", mode="wb", fileobj=open(sys.argv[2], "wb"), mtime=0) as gz:
    gz.write(buf.getvalue())
EOF
if python3 "$HERE/check_snapshot.py" "$W/tampered.tar.gz" "$W/$last.log" > /dev/null; then
	echo "check_snapshot.py accepted a tampered tarball"; exit 1
fi
echo "OK: $n_ok machines rebuilt byte-identically from their logs and checked; tampering detected"
