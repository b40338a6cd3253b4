#!/usr/bin/env bash
# Idempotent machine set-up: Debian packages, Open vSwitch running, the virtualenv.
# Every step checks first, so a second run does nothing and takes seconds. A step that has
# work to do says so in one line, "setup [3/6] starting Open vSwitch" (in a terminal and a log).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=6
step() { echo "setup [$1/$STEPS] $2"; }

# chromium and chromium-driver: the headless browser of the live view's test (selenium).
PKGS="python3-venv mininet openvswitch-switch python3-networkx iperf3 iputils-ping iputils-arping fping ethtool iproute2 procps psmisc chromium chromium-driver"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  step 1 "installing Debian packages:$missing"
  if [ "$(id -u)" != 0 ]; then echo "setup: must run as root to install packages" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Large socket buffers for the userspace switch (see fabric/emulate.py ensure_switch_buffers).
for k in net.core.wmem_default net.core.rmem_default; do
  if [ "$(sysctl -n $k)" -lt 67108864 ]; then
    step 2 "raising $k to 64 MiB"
    sysctl -qw $k=67108864
  fi
done
if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
  step 3 "starting Open vSwitch"
  /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
  ovs-vsctl --timeout=10 show >/dev/null
fi

VENV=.venv
stamp="$VENV/.requirements.sha"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  step 4 "creating $VENV from /usr/bin/python3 (with system site packages for mininet)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step 5 "installing requirements.txt into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
# The project itself, editable (the aifabric and aifabric-controller commands), once per
# change of pyproject.toml.
pstamp="$VENV/.pyproject.sha"
pwant=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$pstamp" 2>/dev/null)" != "$pwant" ] || [ ! -x "$VENV/bin/aifabric" ]; then
  step 6 "installing this project into $VENV (pip install -e .)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
  echo "$pwant" > "$pstamp"
fi
"$VENV/bin/python" -c "import mininet.net, networkx, numpy, yaml, selenium" \
  || { echo "setup: $VENV cannot import mininet/networkx/numpy/yaml/selenium" >&2; exit 1; }
