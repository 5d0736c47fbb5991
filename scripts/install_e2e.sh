#!/usr/bin/env bash
# Optional: what the end-to-end OHIF/Orthanc test (tests/e2e) needs beyond scripts/install.sh.
# Debian packages orthanc + orthanc-dicomweb (the PACS), chromium (the browser OHIF runs in) and
# dicom3tools (dciodvfy, checks the converter's DICOM), and
# the Python `playwright` driver (the `e2e` extra; its own browser download is never used).
# Idempotent. When a piece cannot be installed the e2e test skips, naming the missing piece.
set -uo pipefail
cd "$(dirname "$0")/.."
export PIP_CONSTRAINT="$PWD/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
status=0

APT_PACKAGES=(orthanc orthanc-dicomweb chromium dicom3tools)
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

if ! python -m pip install --quiet --progress-bar off -e ".[e2e]"; then
    echo "install_e2e: pip install of the e2e extra (playwright) failed (the e2e test will skip)" >&2
    status=1
fi
exit $status
