"""The recipes of the real-image test corpus: every package list, layer script and image config.

Debian bookworm minbase, as Debian's official (slim) images set it up, and python, node, gcc,
postgres and nginx images each one layer over it, configured as the official images are (Env, Cmd,
Entrypoint, ExposedPorts, StopSignal). tests/support/imagebuild.py builds them; the cache key hashes
this file, so changing a recipe rebuilds the corpus.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SUITE = "bookworm"
MIRROR = os.environ.get("ROOTLESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("ROOTLESS_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# Files the official Debian images add so that apt and dpkg behave in a container (our own words).
BASE_FILES = {
    "etc/apt/apt.conf.d/docker-clean": (
        "# No package cache in an image: delete .debs after every dpkg run and keep no pkgcache.\n"
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/apt/apt.conf.d/docker-gzip-indexes": (
        'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n'
    ),
    "etc/apt/apt.conf.d/docker-autoremove-suggests": (
        'Apt::AutoRemove::SuggestsImportant "false";\n'
    ),
    "etc/dpkg/dpkg.cfg.d/docker": (
        "# As Debian's slim images: no documentation, man pages or translations.\n"
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/locale/*\npath-exclude /usr/share/lintian/*\n"
        "path-exclude /usr/share/linda/*\n"
    ),
    "usr/sbin/policy-rc.d": "#!/bin/sh\n# No service starts while an image is built.\nexit 101\n",
    "etc/apt/sources.list.d/debian.sources": (
        f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {SECURITY}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    ),
}

# Run in the base's chroot after debootstrap: current security fixes, then the trim.
BASE_RUN = """set -eu
rm -f /etc/apt/sources.list
chmod 0755 /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get -y -qq upgrade
for d in /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale /usr/share/lintian; do
  [ -d "$d" ] || continue
  find "$d" -mindepth 1 -not -type d -not -name copyright -delete
  find "$d" -mindepth 1 -depth -type d -empty -delete
done
"""

# The end of every layer's script: what the official images leave out of a layer.
CLEAN = """apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/partial \\
  /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old \\
  /var/cache/ldconfig/aux-cache /var/log/bootstrap.log /tmp/* /var/tmp/*
mkdir -p /var/cache/apt/archives/partial
"""


def apt_install(*packages: str, before: str = "", after: str = "") -> str:
    return (
        "set -eu\nexport DEBIAN_FRONTEND=noninteractive\napt-get update -qq\n"
        + before
        + f"apt-get install -y -qq --no-install-recommends {' '.join(packages)}\n"
        + after
    )


PG_MAJOR = "15"
PG_ENTRYPOINT = r"""#!/bin/sh
# The postgres image's entry point, after the official image's: as root, own $PGDATA and switch to
# the postgres user with gosu; as postgres, create the cluster on first start, then run the server.
set -e
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec gosu postgres "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --username=postgres --auth-local=trust \
    --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" $POSTGRES_INITDB_ARGS >&2
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf "ALTER USER postgres PASSWORD '%s';\n" "$POSTGRES_PASSWORD" |
      postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf "host all all all %s\n" "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
fi
exec "$@"
"""

POSTGRES_RUN = apt_install(
    f"postgresql-{PG_MAJOR}",
    "gosu",
    # no cluster at install time (the entry point or the user makes one), as the official image
    before=(
        "apt-get install -y -qq --no-install-recommends postgresql-common\n"
        "sed -ri 's/#(create_main_cluster) .*$/\\1 = false/' "
        "/etc/postgresql-common/createcluster.conf\n"
    ),
    after=(
        "install -d -o postgres -g postgres -m 3777 /var/run/postgresql\n"
        "install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data\n"
        "cat >/usr/local/bin/docker-entrypoint.sh <<'EOF'\n"
        + PG_ENTRYPOINT
        + "EOF\nchmod 0755 /usr/local/bin/docker-entrypoint.sh\n"
    ),
)

NGINX_RUN = apt_install(
    "nginx",
    # logs to the container's stdout and stderr, as the official image
    after="ln -sf /dev/stdout /var/log/nginx/access.log\nln -sf /dev/stderr /var/log/nginx/error.log\n",
)


@dataclass
class Recipe:
    """One image of the corpus: a layer's script over the base, and the image config."""

    ref: str
    run: str
    config: dict = field(default_factory=dict)


BASE_CONFIG = {"Env": [PATH_ENV], "Cmd": ["bash"]}

RECIPES = [
    Recipe(
        "python", apt_install("python3"), {"Env": [PATH_ENV, "LANG=C.UTF-8"], "Cmd": ["python3"]}
    ),
    Recipe("node", apt_install("nodejs"), {"Env": [PATH_ENV], "Cmd": ["node"]}),
    Recipe("gcc", apt_install("gcc", "libc6-dev", "make"), {"Env": [PATH_ENV], "Cmd": ["bash"]}),
    Recipe(
        "postgres",
        POSTGRES_RUN,
        {
            "Env": [
                f"PATH=/usr/lib/postgresql/{PG_MAJOR}/bin:" + PATH_ENV[5:],
                f"PG_MAJOR={PG_MAJOR}",
                "PGDATA=/var/lib/postgresql/data",
                "LANG=C.UTF-8",
            ],
            "Entrypoint": ["docker-entrypoint.sh"],
            "Cmd": ["postgres"],
            "ExposedPorts": {"5432/tcp": {}},
            "Volumes": {"/var/lib/postgresql/data": {}},
            "StopSignal": "SIGINT",
        },
    ),
    Recipe(
        "nginx",
        NGINX_RUN,
        {
            "Env": [PATH_ENV],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT",
        },
    ),
]
BASE_REF = SUITE
REFS = [BASE_REF] + [r.ref for r in RECIPES]
