#!/usr/bin/env bash
# Installs what eiperf's testbed and tests need from Debian when it is missing:
# nginx, a JDK (java + javac), openssh-server and the central database's parts (MariaDB, its
# JDBC driver, the Tomcat JDBC pool). Idempotent and quick when all is there.
#   --bench   also what only the benchmarks use (wrk: the physical reference of
#             bench/bench_generator.py); `make bench` passes it, `make test` does not.
set -euo pipefail
bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
    esac
done
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v sudo >/dev/null 2>&1 || missing+=(sudo)          # the multi-host testbed's LB user
command -v ip >/dev/null 2>&1 || missing+=(iproute2)        # its network namespaces
command -v chromium >/dev/null 2>&1 || missing+=(chromium)   # renders HTML reports in tests
# The testbed's central database (a private mariadbd, never the system one), the JDBC driver
# and the Tomcat JDBC pool Carbon uses.
new_mariadb=0
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    missing+=(mariadb-server); new_mariadb=1
fi
[ -f /usr/share/java/mariadb-java-client.jar ] || missing+=(libmariadb-java)
[ -f /usr/share/java/tomcat9-jdbc.jar ] || missing+=(libtomcat9-java)
if [ "$bench" = 1 ]; then
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)         # bench_generator's reference
fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "eiperf: missing system packages: ${missing[*]} -- run 'make' as root or install them with apt-get" >&2
    exit 1
fi
echo "eiperf: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian nginx package starts a system nginx on port 80; eiperf runs its own private
# instances, so stop the system one if the package just started it (it is not ours to keep).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl stop nginx || true
fi
# Likewise the system MariaDB the package may just have started (only when it was installed now).
if [ "$new_mariadb" = 1 ] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet mariadb 2>/dev/null; then
    systemctl stop mariadb || true
fi
