#!/usr/bin/env bash
# Kernel and limit settings for a host that runs innergate at high connection counts.
# Writes /etc/sysctl.d/90-innergate.conf and /etc/security/limits.d/90-innergate.conf,
# applies the sysctls, and prints each setting with why it is there. Idempotent.
#
#   sudo scripts/tune-host.sh            # write and apply
#   scripts/tune-host.sh --print         # only show what it would write
set -euo pipefail

sysctl_conf=$(cat <<'CONF'
# Written by innergate's scripts/tune-host.sh.

# Accept queue per listening socket (one per worker and port with SO_REUSEPORT).
# The default 4096 drops SYNs in connection bursts; listen() asks for this much.
net.core.somaxconn = 65535
# Half-open connections waiting for the handshake's last ACK.
net.ipv4.tcp_max_syn_backlog = 65535
# Packets queued per CPU between the NIC and the stack under bursts.
net.core.netdev_max_backlog = 65536

# A proxy opens one upstream connection per client connection it cannot reuse: give
# outgoing connections the whole ephemeral range, and reuse TIME_WAIT sockets for new
# outgoing connections when timestamps make it safe.
net.ipv4.ip_local_port_range = 1024 65535
net.ipv4.tcp_tw_reuse = 1
# Do not fall back to slow start on a keep-alive connection that idled for one RTO.
net.ipv4.tcp_slow_start_after_idle = 0
# Closed connections leave FIN_WAIT_2 sooner (the default is 60 s).
net.ipv4.tcp_fin_timeout = 15

# When one process closes its SO_REUSEPORT listener (a worker stops, or the old
# process hands over during an upgrade), connections already queued on it move to
# another listener of the group instead of being reset (Linux 5.14+).
net.ipv4.tcp_migrate_req = 1

# Socket buffers may grow to 16 MiB for bulk tcp/tls streams; the defaults stay small
# so 10,000 idle connections cost little.
net.core.rmem_max = 16777216
net.core.wmem_max = 16777216
net.ipv4.tcp_rmem = 4096 131072 16777216
net.ipv4.tcp_wmem = 4096 16384 16777216

# Open files system-wide: two descriptors per proxied connection, plus rings and files.
fs.file-max = 4194304
fs.nr_open = 4194304
CONF
)

limits_conf=$(cat <<'CONF'
# Written by innergate's scripts/tune-host.sh: descriptors for the innergate user
# when started outside systemd (the units set LimitNOFILE themselves).
innergate soft nofile 1048576
innergate hard nofile 1048576
innergate soft memlock unlimited
innergate hard memlock unlimited
CONF
)

if [ "${1:-}" = "--print" ]; then
    printf '%s\n\n%s\n' "$sysctl_conf" "$limits_conf"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "tune-host: run as root (or with --print to see the settings)" >&2
    exit 1
fi
printf '%s\n' "$sysctl_conf" > /etc/sysctl.d/90-innergate.conf
mkdir -p /etc/security/limits.d
printf '%s\n' "$limits_conf" > /etc/security/limits.d/90-innergate.conf
# A setting this kernel lacks (tcp_migrate_req before 5.14) is reported, not fatal.
sysctl -p /etc/sysctl.d/90-innergate.conf || echo "tune-host: some settings were refused by this kernel (above)" >&2
echo "tune-host: wrote /etc/sysctl.d/90-innergate.conf and /etc/security/limits.d/90-innergate.conf"
