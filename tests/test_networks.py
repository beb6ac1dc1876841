"""`rootless network` without containers: create, ls, inspect, exists, rm, prune, as podman 4 shows
them (its network objects, its messages and exit codes), checked beside Debian's podman."""

import json
import re

import pytest

ID = re.compile(r"^[0-9a-f]{64}$")
CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _inspect(rootless, *names):
    cp = rootless("network", "inspect", *names)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def test_create_and_inspect_shape(rootless):
    cp = rootless("network", "create", "--subnet", "10.123.5.0/24", "--label", "app=web",
                  "--label", "tier", "web")  # fmt: skip
    assert (cp.returncode, cp.stdout) == (0, "web\n"), cp.stderr
    (net,) = _inspect(rootless, "web")
    assert list(net) == ["name", "id", "driver", "network_interface", "created", "subnets",
                         "ipv6_enabled", "internal", "dns_enabled", "labels", "ipam_options"]  # fmt: skip
    assert ID.match(net["id"]) and CREATED.match(net["created"])
    assert net["subnets"] == [{"subnet": "10.123.5.0/24", "gateway": "10.123.5.1"}]
    assert (net["driver"], net["network_interface"]) == ("bridge", "podman1")
    assert (net["ipv6_enabled"], net["internal"], net["dns_enabled"]) == (False, False, True)
    assert net["labels"] == {"app": "web", "tier": ""}
    assert net["ipam_options"] == {"driver": "host-local"}
    # podman's indentation: five spaces per level for inspect
    assert rootless("network", "inspect", "web").stdout.startswith(
        '[\n     {\n          "name": "web",'
    )
    # by ID and by ID prefix; --format
    assert _inspect(rootless, net["id"])[0]["name"] == "web"
    out = rootless("network", "inspect", "--format", "{{.Name}} {{.Driver}}", net["id"][:8])
    assert out.stdout == "web bridge\n"


def test_default_network_and_automatic_subnets(rootless):
    (default,) = _inspect(rootless, "podman")
    assert default["id"] == "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9"
    assert default["subnets"] == [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]
    assert (default["network_interface"], default["dns_enabled"]) == ("podman0", False)
    for name in ("a", "b"):
        rootless("network", "create", name, check=True)
    a, b = _inspect(rootless, "a", "b")
    assert (
        a["subnets"][0]["subnet"] == "10.89.0.0/24" and b["subnets"][0]["subnet"] == "10.89.1.0/24"
    )
    assert (a["network_interface"], b["network_interface"]) == ("podman1", "podman2")
    cp = rootless("network", "create", "--internal", "--ipv6", "--disable-dns", "c", check=True)
    (c,) = _inspect(rootless, "c")
    assert c["internal"] and c["ipv6_enabled"] and not c["dns_enabled"]
    v4, v6 = c["subnets"]
    assert v4 == {"subnet": "10.89.2.0/24"}  # internal and no DNS: no gateway, as podman
    assert v6["subnet"].startswith("fd") and v6["subnet"].endswith("::/64")
    # no name: the bridge's name is the network's
    cp = rootless("network", "create", check=True)
    assert cp.stdout == "podman4\n"


def test_ls_table_quiet_json_filters(rootless):
    rootless("network", "create", "--label", "k=v", "zeta", check=True)
    rootless("network", "create", "alpha", check=True)
    lines = rootless("network", "ls", check=True).stdout.splitlines()
    assert lines[0] == "NETWORK ID    NAME        DRIVER"
    assert [ln.split()[1] for ln in lines[1:]] == ["alpha", "podman", "zeta"]
    assert re.match(r"^[0-9a-f]{12}  alpha       bridge$", lines[1])
    assert rootless("network", "ls", "-q").stdout == "alpha\npodman\nzeta\n"
    nets = json.loads(rootless("network", "ls", "--format", "json").stdout)
    assert [n["name"] for n in nets] == ["alpha", "podman", "zeta"]
    assert rootless("network", "ls", "--format", "json").stdout.startswith('[\n  {\n    "name"')
    out = rootless("network", "ls", "--filter", "label=k=v", "--format", "{{.Name}} {{.Labels}}")
    assert out.stdout == "zeta k=v\n"
    assert rootless("network", "ls", "--noheading", "-f", "name=^al").stdout.split()[1] == "alpha"
    assert (
        len(rootless("network", "ls", "--no-trunc", "-q", "-f", "driver=bridge").stdout.split())
        == 3
    )


def test_exists_rm_prune(rootless):
    rootless("network", "create", "one", check=True)
    rootless("network", "create", "two", check=True)
    assert rootless("network", "exists", "one").returncode == 0
    cp = rootless("network", "exists", "nope")
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "")
    cp = rootless("network", "rm", "one")
    assert (cp.returncode, cp.stdout) == (0, "one\n")
    assert rootless("network", "exists", "one").returncode == 1
    cp = rootless("network", "prune", "-f")
    assert (cp.returncode, cp.stdout) == (0, "two\n")
    assert rootless("network", "ls", "-q").stdout == "podman\n"
    cp = rootless("network", "prune", input="n\n")  # asks first, as podman does
    assert "Are you sure you want to continue? [y/N]" in cp.stdout and cp.returncode == 0


BAD = [
    (["create", "dup"], 'network name dup already used: network already exists', 125),
    (["create", "--subnet", "10.89.0.0/16", "over"], "subnet 10.89.0.0/16 is already used on the host or by another config", 125),
    (["create", "--gateway", "10.1.2.3", "g"], "cannot set gateway or range without subnet", 125),
    (["create", "--subnet", "10.91.0.0/24", "--gateway", "10.92.0.1", "g"], "gateway 10.92.0.1 not in subnet 10.91.0.0/24", 125),
    (["create", "--subnet", "bogus", "g"], "invalid CIDR address: bogus", 125),
    (["create", "bad/name"], "network name bad/name invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument", 125),
    (["create", "--driver", "foo", "g"], "unsupported driver foo: invalid argument", 125),
    (["rm", "nope"], "unable to find network with name or ID nope: network not found", 1),
    (["rm", "podman"], "default network podman cannot be removed", 125),
    (["inspect", "nope"], "inspecting object: network nope: unable to find network with name or ID nope: network not found", 125),
]  # fmt: skip


@pytest.mark.parametrize("args,message,code", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_as_podman(rootless, podman, args, message, code):
    """One line each, podman's words and code; nothing half-created."""
    for tool in (rootless, podman):
        tool("network", "create", "--subnet", "10.89.0.0/24", "dup", check=True)
        before = tool("network", "ls", "-q").stdout
        cp = tool("network", *args)
        assert cp.returncode == code, (tool, cp.stderr)
        assert cp.stderr.strip().splitlines()[-1] == f"Error: {message}", tool
        assert tool("network", "ls", "-q").stdout == before


def test_network_store_survives_garbage(rootless):
    """A broken file in the store is skipped, not a traceback."""
    import os

    d = os.path.join(rootless.data_dir, "rootless", "networks")
    rootless("network", "create", "ok", check=True)
    with open(os.path.join(d, "broken.json"), "w") as f:
        f.write("{not json")
    assert rootless("network", "ls", "-q").stdout == "ok\npodman\n"
