#!/bin/bash
# Build the emulator's .deb packages into $1 (default <repo>/build/debs).
#
# Every directory tests/emulator/packages/<package>/ is one product (names starting with "_" are skipped). It holds:
#   package.conf  bash variables: PACKAGE, VERSIONS ("version:schema ..."), FILE_PATTERN (%p package, %v version,
#                 %a arch), LIB_DIR (where src/positemu is installed), SERVICE, SYSTEM_USER, HOME_DIR,
#                 OWNED_DIRS (created and chowned to SYSTEM_USER by postinst), DESCRIPTION, optional DEPENDS.
#   root/         files installed as they are (bin wrappers, unit, default config); @PACKAGE@ @VERSION@ @SCHEMA@
#                 @SERVICE@ are substituted in text files.
#   conffiles     (optional) dpkg conffiles, one absolute path a line.
#   debian/       (optional) maintainer scripts overriding the shared ones in tests/emulator/debian/.
#   postinst-extra (optional) shell lines run by the shared postinst on `configure`, after the account and the
#                 OWNED_DIRS exist and before the service is (re)started ("$2" is the previously configured
#                 version, empty on a first install); the same @VARS@ are substituted.
# Each package gets <LIB_DIR>/positemu (the Python code) and <LIB_DIR>/positemu_build.json (package, version,
# schema), so old and new versions differ only by what they report and the schema they expect.
# Deterministic: fixed mtimes (SOURCE_DATE_EPOCH), root ownership, sorted inputs. Needs bash and dpkg-deb only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$REPO/build/debs}"
ARCH="$(dpkg --print-architecture)"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"

command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb is needed (apt-get install dpkg)" >&2; exit 1; }

# The vendors' packages bring their own database drivers; so does the emulator: psycopg 3 with its bundled libpq
# (the psycopg[binary] wheel of the project's virtualenv, pinned in requirements.txt) goes into every package's
# LIB_DIR. A system-wide python3-psycopg is then only there when the collection installs it, as on a real node.
BUILD_PYTHON="${POSITEMU_BUILD_PYTHON:-$REPO/.venv/bin/python}"
[ -x "$BUILD_PYTHON" ] || BUILD_PYTHON=python3
mapfile -t VENDORED < <("$BUILD_PYTHON" - <<'PY'
import os, psycopg, psycopg_binary, typing_extensions
site = os.path.dirname(os.path.dirname(psycopg.__file__))
for path in (os.path.dirname(psycopg.__file__), os.path.dirname(psycopg_binary.__file__),
             os.path.join(site, "psycopg_binary.libs"), typing_extensions.__file__):
    print(path)
PY
) || { echo "build.sh: $BUILD_PYTHON cannot import psycopg[binary]: run scripts/setup first" >&2; exit 1; }
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

substitute() {  # substitute <file>: replace the @VARS@ in a text file in place
    local file="$1"
    grep -Iq . "$file" 2>/dev/null || return 0
    sed -i -e "s|@PACKAGE@|$PACKAGE|g" -e "s|@VERSION@|$VERSION|g" -e "s|@SCHEMA@|$SCHEMA|g" \
        -e "s|@SERVICE@|$SERVICE|g" -e "s|@SYSTEM_USER@|$SYSTEM_USER|g" -e "s|@HOME_DIR@|$HOME_DIR|g" \
        -e "s|@OWNED_DIRS@|$OWNED_DIRS|g" -e "s|@DESCRIPTION@|$DESCRIPTION|g" "$file"
}

build_one() {  # build_one <product dir> <version> <schema>
    local dir="$1" stage
    stage="$WORK/$PACKAGE-$VERSION"
    mkdir -p "$stage/DEBIAN" "$stage$LIB_DIR"
    if [ -d "$dir/root" ]; then
        cp -a "$dir/root/." "$stage/"
    fi
    cp -a "$HERE/src/positemu" "$stage$LIB_DIR/"
    find "$stage" -name __pycache__ -prune -exec rm -rf {} +
    printf '{"package": "%s", "version": "%s", "schema": %s}\n' "$PACKAGE" "$VERSION" "$SCHEMA" \
        > "$stage$LIB_DIR/positemu_build.json"
    for script in postinst prerm postrm; do
        if [ -f "$dir/debian/$script" ]; then
            cp "$dir/debian/$script" "$stage/DEBIAN/$script"
        elif [ -f "$HERE/debian/$script" ]; then
            cp "$HERE/debian/$script" "$stage/DEBIAN/$script"
        fi
    done
    if [ -f "$stage/DEBIAN/postinst" ]; then  # the package's own configure steps, or nothing
        local extra="/dev/null"
        [ -f "$dir/postinst-extra" ] && extra="$dir/postinst-extra"
        awk -v extra="$extra" '/@POSTINST_EXTRA@/ { while ((getline line < extra) > 0) print line; next } { print }' \
            "$stage/DEBIAN/postinst" > "$stage/DEBIAN/postinst.new"
        mv "$stage/DEBIAN/postinst.new" "$stage/DEBIAN/postinst"
    fi
    if [ -f "$dir/conffiles" ]; then
        cp "$dir/conffiles" "$stage/DEBIAN/conffiles"
    fi
    cat > "$stage/DEBIAN/control" <<CONTROL
Package: $PACKAGE
Version: $VERSION
Architecture: $ARCH
Maintainer: positops emulator <positops@localhost>
Depends: ${DEPENDS:-python3}
Section: non-free/devel
Priority: optional
Description: $DESCRIPTION (emulator)
 Test emulator of the vendor package, built by positops.ha tests/emulator/build.sh.
 It models the documented behaviour only; see tests/emulator/README.md.
CONTROL
    while IFS= read -r -d '' file; do substitute "$file"; done < <(find "$stage" -type f -print0)
    # Third-party code is copied after the @VAR@ substitution, which is only for our own files.
    cp -a "${VENDORED[@]}" "$stage$LIB_DIR/"
    find "$stage" -name __pycache__ -prune -exec rm -rf {} +
    chmod 0755 "$stage/DEBIAN"/post* "$stage/DEBIAN"/pre* 2>/dev/null || true
    find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    local name="${FILE_PATTERN//%p/$PACKAGE}"
    name="${name//%v/$VERSION}"
    name="${name//%a/$ARCH}"
    dpkg-deb --root-owner-group -Zgzip -z1 --build "$stage" "$WORK/$name" >/dev/null
    # A lab's package server may be sending this file right now (a Molecule prepare rebuilds beside the pytest
    # labs): an identical build leaves it alone, a different one replaces it by a rename, never in place.
    if ! cmp -s "$WORK/$name" "$OUT/$name"; then
        cp "$WORK/$name" "$OUT/.$name.new" && mv -f "$OUT/.$name.new" "$OUT/$name"
    fi
    rm -f "$WORK/$name"
    echo "$OUT/$name"
}

for dir in "$HERE"/packages/*/; do
    dir="${dir%/}"
    case "$(basename "$dir")" in _*) continue ;; esac
    [ -f "$dir/package.conf" ] || { echo "build.sh: $dir has no package.conf, skipped" >&2; continue; }
    (
        PACKAGE="" VERSIONS="" FILE_PATTERN="%p_%v_%a.deb" LIB_DIR="" SERVICE="" SYSTEM_USER="" HOME_DIR=""
        OWNED_DIRS="" DESCRIPTION="" DEPENDS=""
        # shellcheck source=/dev/null
        . "$dir/package.conf"
        for var in PACKAGE VERSIONS LIB_DIR SERVICE SYSTEM_USER DESCRIPTION; do
            [ -n "${!var}" ] || { echo "build.sh: $dir/package.conf does not set $var" >&2; exit 1; }
        done
        for pair in $VERSIONS; do
            VERSION="${pair%%:*}" SCHEMA="${pair##*:}"
            build_one "$dir" "$VERSION" "$SCHEMA"
        done
    )
done
