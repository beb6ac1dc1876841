"""Real workloads in real Debian images (docs/images.md), as the unprivileged user, on both storage
drivers: Python threads, multiprocessing and asyncio, `python3 -m http.server` on `-p`, a file
written as a non-root uid into a `-v` volume, and apt-get from the Debian mirror through slirp4netns
and through pasta.

Each module container runs for all of its driver's tests; the workloads run in it with `exec`."""

import os
from types import SimpleNamespace

import pytest
from support.images import (
    DRIVERS,
    curl,
    exec_ok,
    free_port,
    run_opts,
    start,
    subordinate_id,
    wait_for_http,
    workload_store,
    write_files,
)

pytestmark = pytest.mark.workload

THREADS_PY = """
import concurrent.futures, queue, threading

results = queue.Queue()
barrier = threading.Barrier(8)  # all eight threads exist at once

def work(i):
    barrier.wait(timeout=60)
    results.put((i, sum(range(i * 10000)), threading.get_native_id()))

threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
got = sorted(results.get_nowait() for _ in threads)
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    squares = list(pool.map(lambda n: n * n, range(10)))
print("threads", [i for i, _, _ in got], len({tid for _, _, tid in got}))
print("sums ok", all(s == sum(range(i * 10000)) for i, s, _ in got))
print("pool", squares)
"""

MP_PY = """
import multiprocessing as mp, os

def child(q, i):
    q.put((i, os.getpid(), os.getppid()))

def square(n):
    return n * n

if __name__ == "__main__":
    for method in ("fork", "spawn"):
        ctx = mp.get_context(method)
        q = ctx.Queue()
        procs = [ctx.Process(target=child, args=(q, i)) for i in range(4)]
        for p in procs:
            p.start()
        got = sorted(q.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(60)
        print(method, [i for i, _, _ in got], len({pid for _, pid, _ in got}),
              all(ppid == os.getpid() for _, _, ppid in got), [p.exitcode for p in procs])
        with ctx.Pool(2) as pool:
            print(method, "pool", pool.map(square, range(6)))
"""

AIO_PY = """
import asyncio, concurrent.futures, threading

barrier = threading.Barrier(4)  # each round of four runs on the pool's four threads at once

def blocking(i):
    barrier.wait(timeout=60)
    return i, threading.current_thread().name

async def echo(reader, writer):
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()

async def main():
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        res = await asyncio.gather(*(loop.run_in_executor(pool, blocking, i) for i in range(8)))
    total = await asyncio.to_thread(sum, range(100))
    infos = await loop.getaddrinfo("localhost", 80)  # the loop's default executor
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\\n")
    line = await reader.readline()
    writer.close()
    server.close()
    await server.wait_closed()
    print("executor", [i for i, _ in res], len({n for _, n in res}))
    print("to_thread", total, "getaddrinfo", bool(infos), "echo", line.decode().strip())

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, python_ref, debian_ref):
    r = workload_store(str(tmp_path_factory.mktemp("workloads")), registry, python_ref, debian_ref)
    r.scripts = write_files(
        str(tmp_path_factory.mktemp("scripts")),
        {"threads.py": THREADS_PY, "mp.py": MP_PY, "aio.py": AIO_PY, "hello.txt": "hello\n"},
    )
    yield r
    r("rm", "-af", "-t", "0", timeout=300)
    r.cleanup()


@pytest.fixture(scope="module", params=DRIVERS)
def py(request, store, python_ref):
    """A python container per driver, serving the scripts dir with `python3 -m http.server` on -p."""
    port = free_port()
    name = start(
        store, request.param, f"py-{request.param}", "-p", f"{port}:8000",
        "-v", f"{store.scripts}:/w:ro", python_ref,
        "python3", "-m", "http.server", "8000", "--directory", "/w",
    )  # fmt: skip
    yield SimpleNamespace(name=name, url=f"http://127.0.0.1:{port}")
    store("rm", "-f", "-t", "0", name, timeout=120)


def test_python_http_server_on_published_port(store, py):
    assert wait_for_http(f"{py.url}/hello.txt") == "hello\n"
    listing = curl(f"{py.url}/")
    assert "threads.py" in listing and "mp.py" in listing
    # each request is served by a thread of ThreadingHTTPServer: ten in a row all answer
    assert all(curl(f"{py.url}/hello.txt") == "hello\n" for _ in range(10))


def test_python_threads(store, py):
    out = exec_ok(store, py.name, "python3", "/w/threads.py")
    assert out.splitlines() == [
        "threads [0, 1, 2, 3, 4, 5, 6, 7] 8",
        "sums ok True",
        f"pool {[n * n for n in range(10)]}",
    ]


def test_python_multiprocessing_fork_and_spawn(store, py):
    out = exec_ok(store, py.name, "python3", "/w/mp.py").splitlines()
    for method in ("fork", "spawn"):
        assert f"{method} [0, 1, 2, 3] 4 True [0, 0, 0, 0]" in out, out
        assert f"{method} pool [0, 1, 4, 9, 16, 25]" in out, out


def test_python_asyncio_with_a_thread_pool(store, py):
    out = exec_ok(store, py.name, "python3", "/w/aio.py")
    assert out.splitlines() == [
        "executor [0, 1, 2, 3, 4, 5, 6, 7] 4",
        "to_thread 4950 getaddrinfo True echo ping",
    ]


WRITER_PY = """
import os, sys
os.makedirs("/data/by-app", exist_ok=True)
with open("/data/by-app/result.txt", "w") as f:
    f.write(f"written by {os.getuid()}:{os.getgid()}\\n")
with open("/data/from-host.txt") as f:
    print("read", f.read().strip(), os.stat("/data/from-host.txt").st_uid)
"""


@pytest.mark.parametrize("driver", DRIVERS)
def test_non_root_writes_into_a_volume(store, python_ref, driver, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o777)  # writable by the container's uid 1000, as a user would make it
    (vol / "from-host.txt").write_text("hello from the host\n")
    try:
        cp = store(
            "--storage-driver", driver, "run", "--rm", *run_opts(), "-u", "1000:1000",
            "-v", f"{vol}:/data", python_ref, "python3", "-c", WRITER_PY,
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
        # the host user's file is root's in the container
        assert cp.stdout == "read hello from the host 0\n"
        # the container's uid and gid 1000 are the host's subordinate ids
        assert (vol / "by-app" / "result.txt").read_text() == "written by 1000:1000\n"
        for path in (vol / "by-app", vol / "by-app" / "result.txt"):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (
                subordinate_id("uid", 1000),
                subordinate_id("gid", 1000),
            ), path
        # as root in the container the same run writes files the host user owns
        cp = store(
            "--storage-driver", driver, "run", "--rm", *run_opts(), "-v", f"{vol}:/data",
            python_ref, "sh", "-c", "echo root > /data/by-root.txt && ls -ln /data/by-app",
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
        assert " 1000 1000 " in cp.stdout
        st = (vol / "by-root.txt").stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    finally:
        store("unshare", "rm", "-rf", str(vol))


APT = (
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null"
    " && hello && dpkg-query -W -f '${Status}\\n' hello"
)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("network", ["slirp4netns", "pasta"])
def test_apt_get_install_from_the_debian_mirror(store, debian_ref, network, driver):
    cp = store(
        "--storage-driver", driver, "run", "--rm", *run_opts(), "--network", network,
        debian_ref, "sh", "-c", APT, timeout=600,
    )  # fmt: skip
    assert cp.returncode == 0, f"{cp.stdout}\n{cp.stderr}"
    assert cp.stdout.splitlines()[-2:] == ["Hello, world!", "install ok installed"]
