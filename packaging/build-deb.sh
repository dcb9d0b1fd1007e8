#!/usr/bin/env bash
# Builds halb's Debian package: the binary (pure Go, PIE), the systemd
# unit, the commented default configuration, man pages, shell completion,
# the example site and keepalived examples. Prints the path of the .deb.
#
#   packaging/build-deb.sh [OUTDIR]      (default OUTDIR: out/)
#   VERSION=1.2.3 packaging/build-deb.sh
set -euo pipefail
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/out}" && cd "${1:-$root/out}" && pwd)
export PATH=/usr/local/go/bin:$PATH
cd "$root"

if [ -z "${VERSION:-}" ]; then
  VERSION="0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).$(git rev-parse --short=10 HEAD 2>/dev/null || echo 0)"
fi
goarch=$(go env GOARCH)
case $goarch in
  386) arch=i386 ;;
  arm) arch=armhf ;;
  *) arch=$goarch ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/halb
doc=$pkg/usr/share/doc/halb
install -d "$pkg/DEBIAN" "$pkg/usr/sbin" "$pkg/lib/systemd/system" "$pkg/etc/halb" \
  "$pkg/usr/share/man/man8" "$pkg/usr/share/man/man5" "$pkg/usr/share/bash-completion/completions" "$doc/examples/keepalived" \
  "$pkg/usr/share/zsh/vendor-completions" "$pkg/usr/share/fish/vendor_completions.d"

revision=$(git rev-parse HEAD 2>/dev/null || true)
CGO_ENABLED=0 go build -trimpath -buildvcs=false -buildmode=pie \
  -ldflags "-s -w -X halb/internal/buildinfo.version=$VERSION -X halb/internal/buildinfo.revision=$revision" \
  -o "$pkg/usr/sbin/halb" ./cmd/halb
install -m 0644 packaging/halb.service "$pkg/lib/systemd/system/halb.service"
install -m 0644 packaging/halb.yaml "$pkg/etc/halb/halb.yaml"
gzip -9n <packaging/man/halb.8 >"$pkg/usr/share/man/man8/halb.8.gz"
gzip -9n <packaging/man/halb.yaml.5 >"$pkg/usr/share/man/man5/halb.yaml.5.gz"
# The completions are generated from halb's own list of commands and flags
# (by a build for this machine, whatever GOARCH the package is for).
gen_completion() { env -u GOOS -u GOARCH CGO_ENABLED=0 go run ./cmd/halb completion "$1"; }
gen_completion bash >"$pkg/usr/share/bash-completion/completions/halb"
gen_completion zsh >"$pkg/usr/share/zsh/vendor-completions/_halb"
gen_completion fish >"$pkg/usr/share/fish/vendor_completions.d/halb.fish"
chmod 0644 "$pkg/usr/share/bash-completion/completions/halb" "$pkg/usr/share/zsh/vendor-completions/_halb" \
  "$pkg/usr/share/fish/vendor_completions.d/halb.fish"
install -m 0644 examples/*.yaml "$doc/examples/"
install -m 0644 examples/keepalived/*.conf "$doc/examples/keepalived/"
install -m 0644 packaging/debian/copyright "$doc/copyright"
{
  echo "halb ($VERSION) unstable; urgency=medium"
  echo
  echo "  * Built from the halb source tree, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo " -- halb developers <halb@example.org>  $(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz" "$pkg"/usr/share/man/man*/*.gz

for s in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$s" "$pkg/DEBIAN/$s"
done
echo /etc/halb/halb.yaml >"$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in >"$pkg/DEBIAN/control"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

deb="$out/halb_${VERSION}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
