"""Listing and selection as podman does them, run as the unprivileged user: `ps` and `images`
--filter/--sort/--noheading/-q/--last/--latest/--no-trunc and --format (json, Go templates with
podman's functions, `table`), the verbs that select by --all/--filter/--latest (start, stop, kill,
rm), `rmi --ignore`, `untag` and `info --format`; podman 4.3 beside for the JSON shapes."""

import json
import re

import pytest
from conftest import Rootless

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    """A store with: `top` running, `ok` exited 0, `three` exited 3, `made` created, and `lab`
    (exited 0) from an image with the label tier=web; created in that order."""
    r = Rootless(str(tmp_path_factory.mktemp("verbs-listing")))
    r.trust(registry)
    r("pull", "-q", busybox_ref, check=True)
    r.img = busybox_ref
    r("run", "-d", "--name", "top", *NONE, busybox_ref, "sleep", "300", check=True)
    r("run", "--name", "ok", *NONE, busybox_ref, "true", check=True)
    assert r("run", "--name", "three", *NONE, busybox_ref, "sh", "-c", "exit 3").returncode == 3
    r(
        "run", "-d", "--name", "made", *NONE, busybox_ref, "true", check=True
    )  # made: restarted below
    r("commit", "-q", "-c", "LABEL tier=web", "ok", "localhost/labelled:1", check=True)
    r("run", "--name", "lab", *NONE, "localhost/labelled:1", "true", check=True)
    r("wait", "made", check=True)
    yield r
    r("rm", "-af", "-t", "0", timeout=300)
    r.cleanup()


def names(cp) -> list[str]:
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.split()


def test_ps_filters(rl):
    ps = lambda *a: names(rl("ps", "--format", "{{.Names}}", *a))  # noqa: E731
    assert ps() == ["top"]
    assert ps("-a") == ["top", "ok", "three", "made", "lab"]  # podman's order: oldest first
    assert ps("--filter", "status=exited", "--filter", "status=running") == ps("-a")
    assert ps("--filter", "status=running") == ["top"]
    assert ps("-a", "--filter", "exited=3") == ["three"]
    assert ps("-a", "--filter", "exited=0") == ["ok", "made", "lab"]
    assert ps("-a", "--filter", "name=^t") == ["top", "three"]  # a regular expression
    assert ps("-a", "--filter", "name=top", "--filter", "name=ok") == ["top", "ok"]
    assert ps("-a", "--filter", "label=tier") == ["lab"]
    assert ps("-a", "--filter", "label=tier=web") == ["lab"]
    assert ps("-a", "--filter", "label=tier=db") == []
    assert ps("-a", "--filter", "label!=tier") == ["top", "ok", "three", "made"]
    assert ps("-a", "--filter", "ancestor=localhost/labelled:1") == ["lab"]
    assert ps("-a", "--filter", "ancestor=labelled:1") == ["lab"]
    assert ps("-a", "--filter", "before=three") == ["top", "ok"]
    assert ps("-a", "--filter", "since=three") == ["made", "lab"]
    top_id = rl("ps", "-q", "--no-trunc", "--filter", "name=top", check=True).stdout.strip()
    assert ps("-a", "--filter", f"id={top_id[:6]}") == ["top"]
    assert ps("--last", "2") == ["made", "lab"]  # all states, the newest two
    assert ps("-l") == ["lab"]
    assert ps("-a", "--sort", "names") == ["lab", "made", "ok", "three", "top"]
    assert ps("-a", "--filter", "status=exited,status=running", "--sort", "status")[-1] == "top"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--filter", "foo=bar"), "foo is an invalid filter"),
        (("--filter", "status=bogus"), "unknown container state: bogus"),
        (("--filter", "exited=x"), "exited code 'x' is not a number"),
        (("--filter", "nokey"), 'invalid filter "nokey"'),
        (("--filter", "since=nosuch"), 'no container with name or ID "nosuch"'),
        (("--sort", "bogus"), '"bogus" is not a valid value for --sort'),
        (("-l", "--last", "2"), "last and latest are mutually exclusive"),
        (("--format", "{{.Nope}}"), "can't evaluate field Nope"),
        (("--format", "{{if .Names}}"), "has no {{end}}"),
        (("--format", "{{nofunc .Names}}"), 'function "nofunc" not defined'),
    ],
)
def test_ps_bad_input(rl, args, message):
    cp = rl("ps", "-a", *args)
    assert cp.returncode == 125 and cp.stdout == ""
    assert cp.stderr.startswith("Error: ") and message in cp.stderr
    assert len(cp.stderr.splitlines()) == 1


def test_ps_formats(rl):
    out = rl("ps", "-a", "--filter", "name=lab", "--format",
             '{{.Names | upper}} {{index .Labels "tier"}} {{.Labels.tier}} {{json .Labels.tier}} '
             '{{truncate .Image 5}} {{join (split "a,b" ",") "+"}} {{title "up here"}} '
             '{{lower "AB"}} {{if eq .ExitCode 0}}zero{{else}}other{{end}} {{.Labels.nope}}',
             check=True).stdout  # fmt: skip
    assert out == 'LAB web web "web" local a+b Up Here ab zero <no value>\n'
    out = rl("ps", "-a", "--filter", "name=lab", "--format", "{{.Labels}}|{{json .Labels}}").stdout
    assert out.startswith("map[") and "tier:web" in out and '"tier":"web"' in out
    # a `table` format: a header row (the fields' names), columns aligned as Go's tabwriter does
    lines = rl("ps", "-a", "--format", "table {{.ID}} {{.Names}} {{.Status}}", "--sort", "names",
               check=True).stdout.splitlines()  # fmt: skip
    assert lines[0].split("  ")[:2] == ["CONTAINER ID", "NAMES"]
    assert [ln[14:26].strip() for ln in lines[1:]] == ["lab", "made", "ok", "three", "top"]
    assert rl("ps", "-a", "--noheading", "--format", "table {{.Names}}", "--sort", "names",
              check=True).stdout.split() == ["lab", "made", "ok", "three", "top"]  # fmt: skip
    # the default table, with and without its header
    table = rl("ps", "-a", check=True).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]  # fmt: skip
    bare = rl("ps", "-a", "--noheading", check=True).stdout.splitlines()
    assert [ln.split()[:2] for ln in bare] == [ln.split()[:2] for ln in table[1:]]
    assert [ln.split()[-1] for ln in table[1:]] == ["top", "ok", "three", "made", "lab"]
    ids = rl("ps", "-aq", check=True).stdout.split()
    assert [len(i) for i in ids] == [12] * 5
    assert (
        rl("ps", "-a", "--noheading", "--no-trunc", check=True).stdout.split()[0].startswith(ids[0])
    )
    assert len(rl("ps", "-a", "--noheading", "--no-trunc", check=True).stdout.split()[0]) == 64


def test_ps_json_as_podman(rl, podman, registry, busybox_ref):
    """The JSON of `ps --format json` (podman-compose reads it): podman's keys in podman's order."""
    podman.trust(registry)
    podman("run", "--name", "three", *NONE, busybox_ref, "sh", "-c", "exit 3")
    theirs = json.loads(podman("ps", "-a", "--format", "json", check=True).stdout)
    ours = json.loads(rl("ps", "-a", "--format", "json", "--filter", "name=three",
                         check=True).stdout)  # fmt: skip
    assert list(ours[0]) == list(theirs[0])
    for key in ("Exited", "ExitCode", "Names", "Command", "AutoRemove", "Pod", "Labels"):
        assert ours[0][key] == theirs[0][key], key
    assert ours[0]["Status"].startswith("Exited (3) ") and ours[0]["Status"].endswith(" ago")
    lab = json.loads(rl("ps", "-a", "--format", "json", "--filter", "label=tier=web",
                        check=True).stdout)  # fmt: skip
    assert [(c["Names"], c["Labels"]["tier"]) for c in lab] == [(["lab"], "web")]
    # images: the same keys as podman's
    theirs = json.loads(podman("images", "--format", "json", check=True).stdout)
    ours = json.loads(rl("images", "--format", "json", "--filter", "reference=busybox",
                         check=True).stdout)  # fmt: skip
    assert list(ours[0]) == list(theirs[0])
    assert ours[0]["Id"] == theirs[0]["Id"] and ours[0]["Names"] == theirs[0]["Names"]


def test_images_filters_and_sort(rl):
    imgs = lambda *a: names(rl("images", "--format", "{{.Repository}}:{{.Tag}}", *a))  # noqa: E731
    ref = rl.img
    assert imgs() == ["localhost/labelled:1", ref]  # newest first
    assert imgs("--sort", "tag") == ["localhost/labelled:1", ref]
    assert imgs("--sort", "repository") == sorted([ref, "localhost/labelled:1"])
    assert imgs("--filter", "reference=labelled") == ["localhost/labelled:1"]
    assert imgs("--filter", "reference=*/busybox:*") == [ref]
    assert imgs("busybox") == [ref]
    assert imgs("--filter", "label=tier=web") == ["localhost/labelled:1"]
    assert imgs("--filter", "label!=tier") == [ref]
    assert imgs("--filter", "dangling=true") == []
    assert imgs("--filter", "before=localhost/labelled:1") == [ref]
    assert imgs("--filter", "since=" + ref) == ["localhost/labelled:1"]
    assert imgs("--filter", "containers=true", "--filter", "reference=labelled") == [
        "localhost/labelled:1"
    ]
    full = rl("images", "-q", "--no-trunc", "labelled", check=True).stdout.strip()
    assert imgs("--filter", f"id={full}") == ["localhost/labelled:1"]
    out = rl("images", "--format", "{{.CreatedSince}}|{{.ID}}|{{.Labels.tier}}|{{.Dangling}}",
             "labelled", check=True).stdout  # fmt: skip
    assert out.endswith(f"|{full[:12]}|web|false\n") and " ago|" in out
    lines = rl("images", check=True).stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    # the same rows without the heading ("N seconds ago" may tick between the two listings)
    ago = lambda text: re.sub(r"\d+ seconds ago", "N seconds ago", text).splitlines()  # noqa: E731
    assert ago(rl("images", "--noheading", check=True).stdout) == ago("\n".join(lines[1:]))
    for args, message in (
        (("--filter", "foo=1"), 'unsupported image filter "foo"'),
        (("--filter", "dangling=maybe"), 'invalid value "maybe" for filter dangling'),
        (("--sort", "bogus"), '"bogus" is not a valid field for sorting'),
        (("--filter", "reference=x", "busybox"), "cannot specify an image and a filter"),
    ):
        cp = rl("images", *args)
        assert cp.returncode == 125 and message in cp.stderr and len(cp.stderr.splitlines()) == 1


def test_select_verbs(rl):
    """start/stop/kill/rm --all, --filter, --latest print full ids; names print as given."""
    ids = dict(line.split() for line in rl("ps", "-a", "--no-trunc", "--format",
                                           "{{.Names}} {{.ID}}", check=True).stdout.splitlines())  # fmt: skip
    cp = rl("start", "--filter", "name=^made$", check=True)
    assert cp.stdout == ids["made"] + "\n"
    cp = rl("kill", "--latest")  # lab (the newest) has exited: podman's error
    assert cp.returncode == 125 and "can only kill running containers" in cp.stderr
    cp = rl("stop", "-t", "0", "--filter", "name=^made$", check=True)
    assert cp.stdout == ids["made"] + "\n"
    assert rl("stop", "--ignore", "nosuch", check=True).stdout == ""
    cp = rl("stop", "nosuch")
    assert cp.returncode == 125 and 'no container with name or ID "nosuch"' in cp.stderr
    cp = rl("stop", "--all", "top")
    assert cp.returncode == 125 and "cannot be used together" in cp.stderr
    cp = rl("rm", "nosuch")
    assert cp.returncode == 1
    assert rl("rm", "--ignore", "nosuch", check=True).stdout == ""
    rl("run", "--name", "gone1", *NONE, rl.img, "true", check=True)
    rl("run", "--name", "gone2", *NONE, rl.img, "true", check=True)
    cp = rl("rm", "--filter", "name=^gone", check=True)
    assert [len(i) for i in cp.stdout.split()] == [64, 64]
    rl("run", "--name", "gone3", *NONE, rl.img, "true", check=True)
    assert len(rl("rm", "--latest", check=True).stdout.strip()) == 64
    assert "gone3" not in names(rl("ps", "-a", "--format", "{{.Names}}"))
    cp = rl("kill", "-s", "bogus", "top")
    assert cp.returncode == 125 and "invalid signal" in cp.stderr


def test_rmi_ignore_untag_info_format(rl):
    assert rl("rmi", "--ignore", "nosuch:1", check=True).stdout == ""
    assert rl("rmi", "nosuch:1").returncode == 1
    rl("tag", "localhost/labelled:1", "extra:a", "extra:b", check=True)
    rl("untag", "localhost/labelled:1", "extra:a", check=True)
    got = rl("images", "--format", "{{.Names}}", "labelled", check=True).stdout
    assert got == "[localhost/labelled:1 localhost/extra:b]\n" * 2  # a row per name
    cp = rl("untag", "localhost/labelled:1", "extra:zz")
    assert cp.returncode == 125 and "extra:zz: tag not known" in cp.stderr
    cp = rl("untag", "nosuch:1")
    assert cp.returncode == 125 and "image not known" in cp.stderr
    rl("tag", "localhost/labelled:1", "all:gone", check=True)
    image_id = rl("images", "-q", "--no-trunc", "all:gone", check=True).stdout.strip()
    rl("untag", "all:gone", check=True)  # every name goes; the image stays, dangling
    assert rl(
        "images", "-q", "--no-trunc", "--filter", "dangling=true", check=True
    ).stdout.split() == [image_id]
    rl("tag", image_id, "localhost/labelled:1", check=True)
    out = rl("info", "--format", "{{.Host.Arch}}|{{.Store.GraphRoot}}|{{json .Store.GraphDriverName}}",
             check=True).stdout  # fmt: skip
    arch, root, driver = out.strip().split("|")
    assert arch and root.startswith(rl.data_dir) and driver.startswith('"')
    cp = rl("info", "--format", "{{.Nope}}")
    assert cp.returncode == 125 and "can't evaluate field Nope" in cp.stderr
