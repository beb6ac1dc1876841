"""The container's /etc/hosts and /etc/resolv.conf, byte for byte beside Debian's podman 4.3 on this
host: each network mode, --add-host, --dns, --dns-search, --dns-option, --no-hosts, and
containers.conf's base_hosts_file and host_containers_internal_ip."""

import os

import pytest

SHOW = "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname"


@pytest.fixture
def both(rootless, podman, registry, busybox_ref):
    rootless.trust(registry)
    podman.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    podman("pull", "-q", busybox_ref, check=True)
    return rootless, podman, busybox_ref


def _show(tool, ref, *opts, script=SHOW):
    cp = tool("run", "--rm", "--name", "c1", *opts, ref, "sh", "-c", script)
    return cp.returncode, cp.stdout, cp.stderr.strip().splitlines()[-1:] if cp.returncode else []


CASES = {
    "default": ["--hostname", "h1"],
    "none": ["--hostname", "h1", "--network", "none"],
    "host": ["--network", "host"],
    "add-host": ["--hostname", "h1", "--add-host", "foo:1.2.3.4", "--add-host", "bar:::1",
                 "--add-host", "h1:5.6.7.8"],
    "dns-search-option": ["--hostname", "h1", "--dns-search", "a.example", "--dns-search",
                          "b.example", "--dns-option", "ndots:3", "--dns-option", "edns0"],
    "all-dns": ["--hostname", "h1", "--dns", "9.9.9.9", "--dns-search", "x.example",
                "--dns-option", "ndots:2"],
    "no-hosts": ["--hostname", "h1", "--no-hosts"],
    "dns-none": ["--hostname", "h1", "--dns", "none"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_etc_files_as_podman(both, case):
    rootless, podman, ref = both
    ours = _show(rootless, ref, *CASES[case])
    theirs = _show(podman, ref, *CASES[case])
    assert ours == theirs
    assert ours[0] == 0


BAD = {
    "add-host-no-ip": (["--add-host", "foo"], 'bad format for add-host: "foo"'),
    "add-host-bad-ip": (["--add-host", "foo:nope"], 'invalid IP address in add-host: "nope"'),
    "add-host-equals": (["--add-host", "baz=5.6.7.8"], 'bad format for add-host: "baz=5.6.7.8"'),
    "no-hosts-add-host": (["--no-hosts", "--add-host", "a:1.1.1.1"], "--no-hosts and --add-host cannot be set together"),
    "dns-bogus": (["--dns", "bogus"], "bogus is not an ip address"),
    "dns-none-and-ip": (["--dns", "10.0.0.1", "--dns", "none"], "none is not allowed to be specified with other DNS ip addresses"),
    "dns-network-none": (["--network", "none", "--dns", "1.1.1.1"], "conflicting options: dns and the network mode: none"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_flags_as_podman(both, case):
    rootless, podman, ref = both
    args, message = BAD[case]
    for tool in (rootless, podman):
        cp = tool("run", "--rm", *args, ref, "true")
        assert cp.returncode == 125, (tool, cp.stderr)
        assert cp.stderr.strip().splitlines()[-1] == f"Error: {message}"
    assert rootless("ps", "-aq").stdout == ""  # nothing was created


def _conf(tool, text: str) -> None:
    """Add [containers] keys to a tool's user containers.conf."""
    path = os.path.join(tool.config_dir, "containers", "containers.conf")
    old = open(path).read() if os.path.exists(path) else ""
    if "[containers]" in old:
        new = old.replace("[containers]\n", "[containers]\n" + text, 1)
    else:
        new = "[containers]\n" + text + old
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(new)


@pytest.mark.parametrize(
    "setting",
    ['base_hosts_file = "none"\nhost_containers_internal_ip = "none"\n', 'base_hosts_file = "image"\n',
     'base_hosts_file = "{hosts}"\nhost_containers_internal_ip = "192.0.2.77"\n',
     'dns_servers = ["192.0.2.53"]\ndns_searches = ["conf.example"]\ndns_options = ["rotate"]\n'],
    ids=["base-none-hci-none", "base-image", "base-path-hci-ip", "dns-conf"],
)  # fmt: skip
def test_containers_conf_as_podman(both, tmp_path, setting):
    rootless, podman, ref = both
    hosts = tmp_path / "myhosts"
    hosts.write_text(
        "# mine\n10.1.1.1 alpha beta\n\n10.1.1.2\tgamma # comment\n127.0.0.1 localhost\n"
    )
    for tool in (rootless, podman):
        _conf(tool, setting.format(hosts=hosts))
    assert _show(rootless, ref, "--hostname", "h1") == _show(podman, ref, "--hostname", "h1")


def test_host_gateway_is_the_host_address(rootless, registry, busybox_ref):
    """--add-host NAME:host-gateway (newer podman's special value) names host.containers.internal's
    address."""
    rootless.trust(registry)
    out = rootless("run", "--rm", "--add-host", "gw:host-gateway", busybox_ref, "cat", "/etc/hosts")
    lines = out.stdout.splitlines()
    hci = next(ln.split()[0] for ln in lines if ln.endswith("host.containers.internal"))
    assert lines[0] == f"{hci}\tgw"
