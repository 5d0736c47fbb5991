#!/usr/bin/env bash
# Optional: what the end-to-end OHIF/Orthanc test (tests/e2e) needs beyond scripts/install.sh.
# Debian packages orthanc + orthanc-dicomweb (the PACS), chromium (the browser OHIF runs in) and
# dicom3tools (dciodvfy, checks the converter's DICOM), the Python `playwright` driver (the `e2e`
# extra; its own browser download is never used), and OHIF 3.13: the prebuilt static site (`dist/`)
# of the npm package @ohif/app, unpacked into build/ohif (ignored by git; served by
# monailabel_app/lib/ohif_site.py with monailabel_app/ohif/app-config.js). Needs npm (Debian: npm).
# Idempotent. When a piece cannot be installed the e2e test skips, naming the missing piece.
set -uo pipefail
cd "$(dirname "$0")/.."
export PIP_CONSTRAINT="$PWD/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
status=0

APT_PACKAGES=(orthanc orthanc-dicomweb chromium dicom3tools)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)  # only to fetch the OHIF dist (below)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    if command -v apt-get >/dev/null 2>&1; then
        echo "install_e2e: apt-get install ${missing[*]}"
        # policy-rc.d 101: install the orthanc package without starting its system service
        # (the test starts its own Orthanc from a temporary configuration)
        policy=/usr/sbin/policy-rc.d
        created_policy=0
        if [ ! -e "$policy" ] && $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"; then
            created_policy=1
        fi
        if ! ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" fonts-liberation); then
            echo "install_e2e: apt-get install failed (the e2e test will skip)" >&2
            status=1
        fi
        if ((created_policy)); then $SUDO rm -f "$policy"; fi
    else
        echo "install_e2e: no apt-get here; install ${missing[*]} yourself (the e2e test will skip)" >&2
        status=1
    fi
fi

OHIF_VERSION=3.13.2
OHIF_DIR=build/ohif
if [ "$(cat "$OHIF_DIR/.version" 2>/dev/null)" != "$OHIF_VERSION" ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "install_e2e: OHIF $OHIF_VERSION (npm @ohif/app dist) into $OHIF_DIR"
        tmp=$(mktemp -d)
        if (cd "$tmp" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null && tar xzf ohif-app-*.tgz package/dist) \
            && [ -f "$tmp/package/dist/index.html" ]; then
            rm -rf "$OHIF_DIR" && mkdir -p "$(dirname "$OHIF_DIR")" && mv "$tmp/package/dist" "$OHIF_DIR"
            echo "$OHIF_VERSION" > "$OHIF_DIR/.version"
        else
            echo "install_e2e: npm pack @ohif/app@$OHIF_VERSION failed (the OHIF round test will skip)" >&2
            status=1
        fi
        rm -rf "$tmp"
    else
        echo "install_e2e: no npm here; install it (Debian: npm) for OHIF 3.13 (the OHIF round test will skip)" >&2
        status=1
    fi
fi

if ! python -m pip install --quiet --progress-bar off -e ".[e2e]"; then
    echo "install_e2e: pip install of the e2e extra (playwright) failed (the e2e test will skip)" >&2
    status=1
fi
exit $status
