#!/usr/bin/env bash
# Tools the fault suite's partition tests need (tests/fault/test_partitions.py):
# iproute2 (`ip netns`, veth, bridge) and iptables. Installs only what is missing; without
# root or without them the partition tests skip with the reason.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ci_fault_setup: not root, cannot install ${missing[*]}; the partition tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
