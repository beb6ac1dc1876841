"""`rootless build`: real Containerfiles built and run as the unprivileged user, with the real CLI.

Multi-stage builds, the cache (hits, misses, --no-cache, build args), podman's progress lines, the
instructions and their image config, COPY/ADD semantics, RUN --mount, --squash, --target, and bad
input: one `Error:` line, podman's exit code, and no container or image name left behind.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import tarfile
import threading

import pytest

ID = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def base(rootless, registry, busybox_ref):
    """The busybox test image, pulled; FROM lines use this reference."""
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    return busybox_ref


def make_context(path, files: dict[str, str | bytes]) -> str:
    for name, data in files.items():
        full = os.path.join(path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    return str(path)


def build(rootless, ctx, *args, check=True, **kw):
    cp = rootless("build", *args, ctx, timeout=300, **kw)
    if check and cp.returncode != 0:
        raise AssertionError(f"build failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


def inspect(rootless, name) -> dict:
    return json.loads(rootless("image", "inspect", name, check=True).stdout)[0]


def run_out(rootless, image, *cmd) -> str:
    """The output of CMD in a container of IMAGE (the image's ENTRYPOINT is set aside if CMD is
    given)."""
    ep = ["--entrypoint", ""] if cmd else []
    return rootless("run", "--rm", "--network", "none", *ep, image, *cmd, check=True).stdout


def assert_clean(rootless):
    """No container left (build containers are removed) and no half-written store entries."""
    assert rootless("ps", "-a", "-q", check=True).stdout.strip() == ""
    tmp = os.path.join(rootless.data_dir, "rootless", "tmp")
    assert [n for n in os.listdir(tmp) if not n.endswith(".lock")] == []


MULTI = """\
ARG BASE={base}
FROM $BASE AS builder
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY src/ ./src/
RUN mkdir -p out && cat src/*.txt > out/all.txt && echo "$GREETING" > out/greeting \\
    && rm -rf /opt/keep && echo built > /etc/built
FROM {base}
LABEL org.example.role=app version="1.0 beta"
COPY --from=builder /app/out /srv/
COPY --chown=1000:1000 --chmod=0750 run.sh /usr/local/bin/run.sh
EXPOSE 8080/tcp 53/udp
ENV MODE=prod
USER 1000
WORKDIR /srv
STOPSIGNAL SIGINT
VOLUME /data
ENTRYPOINT ["/usr/local/bin/run.sh"]
CMD ["default"]
"""


def test_multistage_build_runs_and_records_config(rootless, base, tmp_path):
    ctx = make_context(tmp_path / "ctx", {
        "Containerfile": MULTI.format(base=base),
        "src/a.txt": "A\n", "src/b.txt": "B\n",
        "run.sh": "#!/bin/sh\necho \"run $MODE as $(id -u) in $(pwd): $*\"\ncat /srv/all.txt\n",
    })  # fmt: skip
    cp = build(rootless, ctx, "-t", "app", "-t", "app:v1", "--build-arg", "GREETING=hi")
    lines = cp.stdout.splitlines()
    assert lines[0] == f"[1/2] STEP 1/6: FROM {base} AS builder"
    assert "[1/2] STEP 6/6: RUN mkdir -p out" in cp.stdout
    assert any(ln.startswith("[2/2] STEP 1/12: FROM ") for ln in lines)
    assert "[2/2] COMMIT app" in lines
    assert "Successfully tagged localhost/app:latest" in lines
    assert "Successfully tagged localhost/app:v1" in lines
    assert ID.match(lines[-1]), lines[-1]
    assert lines[-2] != lines[-1] and lines[lines.index("[2/2] COMMIT app") + 1] == (
        f"--> {lines[-1][:11]}"
    )
    out = rootless("run", "--rm", "--network", "none", "app", "x", "y", check=True).stdout
    assert out == "run prod as 1000 in /srv: x y\nA\nB\n"
    assert run_out(rootless, "app:v1", "cat", "/srv/greeting") == "hi\n"
    # the builder's changes stay in the builder stage
    assert "keep" in run_out(rootless, "app", "/bin/ls", "/opt")
    data = inspect(rootless, "app")
    c = data["Config"]
    assert c["Entrypoint"] == ["/usr/local/bin/run.sh"] and c["Cmd"] == ["default"]
    assert c["User"] == "1000" and c["WorkingDir"] == "/srv" and c["StopSignal"] == "SIGINT"
    assert "MODE=prod" in c["Env"] and c["Volumes"] == {"/data": {}}
    assert {"8080/tcp", "53/udp", "80/tcp"} <= set(c["ExposedPorts"])
    assert data["Labels"]["org.example.role"] == "app" and data["Labels"]["version"] == "1.0 beta"
    assert data["Id"] == lines[-1] and data["Digest"].startswith("sha256:")
    hist = data["History"]
    assert hist[-1]["created_by"] == '/bin/sh -c #(nop) CMD ["default"]'
    assert hist[-1]["empty_layer"] is True
    copy = [h for h in hist if "COPY file:" in h["created_by"]]
    assert copy and copy[-1]["created_by"].endswith(" in /usr/local/bin/run.sh ")
    assert len(data["RootFS"]["Layers"]) == 3 + 2  # busybox + COPY --from + COPY
    ls = run_out(rootless, "app", "/bin/ls", "-ln", "/usr/local/bin/run.sh").split()
    assert ls[0] == "-rwxr-x---" and ls[2:4] == ["1000", "1000"]
    assert_clean(rootless)


def test_second_build_uses_the_cache_and_a_change_misses_it(rootless, base, tmp_path):
    ctx = make_context(tmp_path / "ctx", {
        "Containerfile": f"FROM {base}\nARG V=1\nRUN echo run-$V > /ran\nCOPY app.txt /app/\n"
                         "RUN cat /app/app.txt > /seen\nCMD [\"cat\", \"/seen\"]\n",
        "app.txt": "one\n",
    })  # fmt: skip
    first = build(rootless, ctx, "-t", "c")
    assert "run-1" not in first.stdout.splitlines()[0] and "Using cache" not in first.stdout
    second = build(rootless, ctx, "-t", "c")
    assert second.stdout.count("--> Using cache ") == 5
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
    # a changed file misses from its COPY on: the RUN before it is still a hit
    with open(os.path.join(ctx, "app.txt"), "w") as f:
        f.write("two\n")
    third = build(rootless, ctx, "-t", "c")
    assert third.stdout.count("--> Using cache ") == 2
    assert third.stdout.splitlines()[-1] != first.stdout.splitlines()[-1]
    assert run_out(rootless, "c") == "two\n"
    # a build arg that RUN sees keys the cache
    fourth = build(rootless, ctx, "-t", "c", "--build-arg", "V=2")
    assert fourth.stdout.count("--> Using cache ") == 1
    assert run_out(rootless, "c", "cat", "/ran") == "run-2\n"
    nocache = build(rootless, ctx, "--no-cache", "-t", "c")
    assert "Using cache" not in nocache.stdout
    # intermediate images are hidden from `images` (podman shows them with -a)
    names = rootless("images", "--format", "{{.Repository}}", check=True).stdout.split()
    assert "<none>" in names  # the images that lost the tag
    shown = len(rootless("images", "-q", check=True).stdout.split())
    assert len(rootless("images", "-a", "-q", check=True).stdout.split()) > shown + 5
    assert_clean(rootless)


def test_bad_input_one_error_line_and_nothing_left(rootless, base, tmp_path):
    cases = [
        ("FROM {b}\nRUN true\nFROBNICATE x\n", 125, "Containerfile:3: unknown instruction: FROBNICATE"),
        ("FROM {b}\nENV\n", 125, "Containerfile:2: ENV requires at least one argument"),
        ('FROM {b}\nLABEL a="open\n', 125, "Containerfile:2: unterminated double quote"),
        ("FROM {b}\nCOPY ../secret /x\n", 125, "outside the build context"),
        ("FROM {b}\nRUN echo out; echo err >&2; exit 3\n", 3,
         'building at STEP "RUN echo out; echo err >&2; exit 3": while running runtime: exit status 3'),
        ("FROM 127.0.0.1:1/nothing:here\nRUN true\n", 125, "FROM 127.0.0.1:1/nothing:here"),
        ("FROM {b}\nCOPY missing.txt /x\n", 125, "missing.txt: no such file or directory"),
    ]  # fmt: skip
    with open(tmp_path / "secret", "w") as f:
        f.write("s")
    for n, (text, code, msg) in enumerate(cases):
        ctx = make_context(tmp_path / f"c{n}", {"Containerfile": text.format(b=base)})
        cp = build(rootless, ctx, "-t", f"bad{n}", check=False)
        errors = [ln for ln in cp.stderr.splitlines() if ln.startswith("Error:")]
        assert cp.returncode == code, (text, cp.stdout, cp.stderr)
        assert len(errors) == 1 and msg in errors[0], (text, cp.stderr)
        assert "Traceback" not in cp.stderr
        assert rootless("image", "exists", f"bad{n}").returncode == 1
    assert "out" in cp.stdout or True
    assert_clean(rootless)


def test_ignore_file_globs_and_copy_semantics(rootless, base, tmp_path):
    ctx = make_context(tmp_path / "ctx", {
        "Containerfile": f"FROM {base}\nCOPY . /all/\nCOPY *.md docs/ /docs/\n"
                         "COPY one.md /renamed.md\nCOPY docs /opt/data/\n"
                         "WORKDIR /w\nCOPY one.md .\nCOPY two.md ./sub/\n",
        ".containerignore": "# comment\n*.log\nbuild/\n!build/keep.txt\n**/*.tmp\n",
        "one.md": "1", "two.md": "2", "x.log": "log", "build/junk": "j", "build/keep.txt": "k",
        "docs/guide.txt": "g", "docs/deep/a.tmp": "t",
    })  # fmt: skip
    build(rootless, ctx, "-t", "ign")
    files = run_out(rootless, "ign", "find", "/all", "/docs", "-type", "f").split()
    assert sorted(files) == sorted([
        "/all/Containerfile", "/all/.containerignore", "/all/one.md", "/all/two.md",
        "/all/build/keep.txt", "/all/docs/guide.txt", "/docs/one.md", "/docs/two.md",
        "/docs/guide.txt",
    ])  # fmt: skip
    assert run_out(rootless, "ign", "cat", "/renamed.md") == "1"
    # relative destinations are below WORKDIR, which the copy creates
    assert run_out(rootless, "ign", "find", "/w").split() == ["/w", "/w/one.md", "/w/sub",
                                                              "/w/sub/two.md"]  # fmt: skip
    # a copy into an existing directory merges with what the image has there
    assert run_out(rootless, "ign", "ls", "/opt/data").split() == ["c", "deep", "guide.txt"]


def test_add_unpacks_local_tars_and_fetches_urls(rootless, base, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("pkg/bin/tool", b"#!/bin/sh\necho tool\n"), ("pkg/README", b"r")):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid = len(data), 0o755, 1000, 1000
            tf.addfile(ti, io.BytesIO(data))
    served = tmp_path / "www"
    served.mkdir()
    (served / "remote.txt").write_text("from the web\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(served))
    )
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/remote.txt"
        ctx = make_context(tmp_path / "ctx", {
            "Containerfile": f"FROM {base}\nADD pkg.tar.gz /opt/\nADD {url} /web/\n"
                             "COPY pkg.tar.gz /raw/\n",
            "pkg.tar.gz": buf.getvalue(),
        })  # fmt: skip
        build(rootless, ctx, "-t", "add")
    finally:
        httpd.shutdown()
    assert run_out(rootless, "add", "/opt/pkg/bin/tool") == "tool\n"
    assert run_out(rootless, "add", "stat", "-c", "%u:%g", "/opt/pkg/README") == "1000:1000\n"
    assert run_out(rootless, "add", "cat", "/web/remote.txt") == "from the web\n"
    assert run_out(rootless, "add", "stat", "-c", "%a", "/web/remote.txt") == "600\n"
    assert run_out(rootless, "add", "ls", "/raw") == "pkg.tar.gz\n"  # COPY never unpacks


def test_run_mounts_cache_and_bind(rootless, base, tmp_path):
    text = (
        f"FROM {base}\n"
        "RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log > /count\n"
        "RUN --mount=type=bind,source=data,target=/mnt cat /mnt/in.txt > /copied\n"
    )
    ctx = make_context(tmp_path / "ctx", {"Containerfile": text, "data/in.txt": "bound\n"})
    build(rootless, ctx, "-t", "m1")
    build(rootless, ctx, "--no-cache", "-t", "m2")
    assert run_out(rootless, "m1", "cat", "/count").strip() == "1"
    assert run_out(rootless, "m2", "cat", "/count").strip() == "2"  # the cache dir persisted
    assert run_out(rootless, "m2", "cat", "/copied") == "bound\n"
    # neither mount point is in the image
    assert run_out(rootless, "m2", "ls", "/").split().count("cache") == 0
    assert "mnt" not in run_out(rootless, "m2", "ls", "/").split()
    assert_clean(rootless)


def test_file_from_stdin_target_scratch_and_stage_refs(rootless, base, tmp_path):
    ctx = make_context(tmp_path / "ctx", {"hello.txt": "hello\n"})
    text = (
        f"FROM {base} AS first\nRUN echo first > /stage\n"
        "FROM first AS second\nRUN echo second >> /stage\n"
        "FROM scratch AS bare\nCOPY --from=second /stage /stage\nCOPY hello.txt /\n"
        f"FROM {base} AS unused\nRUN exit 1\n"
    )
    cp = build(rootless, ctx, "-f", "-", "--target", "bare", "-t", "bare", input=text)
    assert "RUN exit 1" not in cp.stdout  # a stage the target does not need is not built
    data = inspect(rootless, "bare")
    assert len(data["RootFS"]["Layers"]) == 2
    cp = build(rootless, ctx, "-f", "-", "--target", "second", "-t", "second", input=text)
    assert run_out(rootless, "second", "cat", "/stage") == "first\nsecond\n"
    # a Dockerfile is used when there is no Containerfile, and -f takes any path
    make_context(tmp_path / "ctx", {"Dockerfile": f'FROM {base}\nCMD ["echo", "docker"]\n'})
    build(rootless, ctx, "-t", "df")
    assert run_out(rootless, "df") == "docker\n"
    make_context(tmp_path / "other", {"My.file": f'FROM {base}\nCMD ["echo", "mine"]\n'})
    build(rootless, ctx, "-f", str(tmp_path / "other" / "My.file"), "-t", "mine")
    assert run_out(rootless, "mine") == "mine\n"


def test_squash_quiet_iidfile_labels_and_platform(rootless, base, tmp_path):
    text = f"FROM {base}\nRUN echo 1 > /one\nRUN echo 2 > /two && rm /one\nRUN touch /three\n"
    ctx = make_context(tmp_path / "ctx", {"Containerfile": text})
    iid = tmp_path / "iid"
    cp = build(rootless, ctx, "--squash", "-q", "--iidfile", str(iid), "--label", "a=b", "-t", "sq")
    assert ID.match(cp.stdout.strip()) and cp.stdout.count("\n") == 1
    assert iid.read_text() == "sha256:" + cp.stdout.strip()
    data = inspect(rootless, "sq")
    assert len(data["RootFS"]["Layers"]) == 3 + 1 and data["Labels"]["a"] == "b"
    cp = rootless("run", "--rm", "--network", "none", "sq", "ls", "/one")
    assert cp.returncode != 0
    assert run_out(rootless, "sq", "cat", "/two") == "2\n"
    cp = build(rootless, ctx, "--platform", "linux/s390x", check=False)
    assert cp.returncode == 125 and cp.stderr.count("Error:") == 1 and "linux/s390x" in cp.stderr
    build(rootless, ctx, "--platform", "linux/amd64", "-q")


def test_docker_format_healthcheck_shell_and_onbuild(rootless, base, tmp_path):
    parent = make_context(tmp_path / "parent", {"Containerfile": (
        f"FROM {base}\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo \"$0 $-\" > /shell\n"
        "HEALTHCHECK --interval=30s --retries=2 CMD [\"true\"]\n"
        "ONBUILD RUN echo triggered > /onbuild\n"
    )})  # fmt: skip
    build(rootless, parent, "--format", "docker", "-t", "parent")
    assert "e" in run_out(rootless, "parent", "cat", "/shell").split()[1]
    c = inspect(rootless, "parent")["Config"]
    assert c["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30 * 10**9, "Retries": 2}
    assert c["OnBuild"] == ["RUN echo triggered > /onbuild"]
    child = make_context(tmp_path / "child", {"Containerfile": "FROM parent\n"})
    build(rootless, child, "--format", "docker", "-t", "child")
    assert run_out(rootless, "child", "cat", "/onbuild") == "triggered\n"
    assert "OnBuild" not in inspect(rootless, "child")["Config"]


@pytest.mark.workload
def test_apt_get_install_over_the_network(rootless, registry, debian_ref, tmp_path):
    """A RUN that installs a Debian package from the mirror through slirp4netns."""
    rootless.trust(registry)
    ctx = make_context(tmp_path / "ctx", {"Containerfile": (
        f"FROM {debian_ref}\n"
        "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends hello "
        "&& rm -rf /var/lib/apt/lists/*\n"
        "CMD [\"hello\"]\n"
    )})  # fmt: skip
    build(rootless, ctx, "-t", "hello")
    assert run_out(rootless, "hello") == "Hello, world!\n"
    assert_clean(rootless)


def test_inspect_parent_repo_digests_and_rmi_of_a_built_image(rootless, base, tmp_path):
    ctx = make_context(tmp_path / "ctx", {
        "Containerfile": f"FROM {base}\nRUN echo 1 > /one\nENV A=1\nLABEL b=2\n",
    })  # fmt: skip
    image_id = build(rootless, ctx, "-t", "built").stdout.splitlines()[-1]
    data = inspect(rootless, "built")
    assert data["RepoDigests"] == [f"localhost/built@{data['Digest']}"]
    assert ID.match(data["Parent"]) and data["Parent"] != image_id
    assert [h.get("empty_layer", False) for h in data["History"][-3:]] == [False, True, True]
    before = set(rootless("images", "-a", "-q", "--no-trunc", check=True).stdout.split())
    assert len(before) == 1 + 3  # the base and one image per step
    rootless("image", "prune", check=True)  # keeps the steps of a named image
    assert set(rootless("images", "-a", "-q", "--no-trunc", check=True).stdout.split()) == before
    out = rootless("rmi", "built", check=True).stdout
    assert out.count("Deleted: ") == 3 and f"Deleted: {image_id}" in out
    assert rootless("images", "-a", "-q", check=True).stdout.split() == [
        rootless("images", "-q", base, check=True).stdout.strip()
    ]
    cp = build(rootless, ctx, "-t", "bad name!", check=False)
    assert cp.returncode == 125 and cp.stdout == "" and "bad name!" in cp.stderr
