"""Real workloads in real Debian images (docs/images.md), as the unprivileged user, on both storage
drivers: nodejs (a libuv thread-pool workload, an HTTP server on `-p`) and gcc (a threaded C program,
`make -j2` of a small project)."""

import hashlib
import json
from types import SimpleNamespace

import pytest
from support.images import (
    DRIVERS,
    curl,
    exec_ok,
    free_port,
    start,
    wait_for_http,
    workload_store,
    write_files,
)

pytestmark = pytest.mark.workload

SERVER_JS = """
const http = require("http");
const os = require("os");
http.createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ path: req.url, hostname: os.hostname(), uid: process.getuid() }));
}).listen(8080, () => console.log("listening on 8080"));
"""

# Eight pbkdf2 calls at once run on libuv's thread pool (4 threads by default), in parallel.
PBKDF2_JS = """
const crypto = require("crypto");
const fs = require("fs");
const N = 8;
const keys = [];
let done = 0, maxThreads = 0;
const threads = () => fs.readdirSync("/proc/self/task").length;
for (let i = 0; i < N; i++) {
  crypto.pbkdf2("secret", "salt" + i, 50000, 32, "sha256", (err, key) => {
    if (err) throw err;
    keys[i] = key.toString("hex");
    maxThreads = Math.max(maxThreads, threads());
    if (++done === N) console.log(JSON.stringify({ keys, maxThreads }));
  });
}
maxThreads = Math.max(maxThreads, threads());
"""

THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define N 8
static long sums[N];

static void *work(void *arg) {
    long i = (long)arg, s = 0;
    for (long k = 0; k < 100000; k++)
        s += k % (i + 1);
    sums[i] = s;
    return NULL;
}

int main(void) {
    pthread_t t[N];
    long total = 0;
    for (long i = 0; i < N; i++) {
        int err = pthread_create(&t[i], NULL, work, (void *)i);
        if (err) {
            fprintf(stderr, "pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        total += sums[i];
    }
    printf("%d threads, total %ld\n", N, total);
    return 0;
}
"""

PROJECT = {
    "proj/Makefile": """
        CFLAGS = -O2 -Wall -Werror
        OBJS = main.o greet.o calc.o

        app: $(OBJS)
        \t$(CC) -o $@ $(OBJS)

        %.o: %.c
        \t$(CC) $(CFLAGS) -c -o $@ $<

        clean:
        \trm -f app $(OBJS)
        """,
    "proj/greet.h": "const char *greeting(void);\n",
    "proj/greet.c": '#include "greet.h"\nconst char *greeting(void) { return "hello from make"; }\n',
    "proj/calc.h": "int answer(void);\n",
    "proj/calc.c": '#include "calc.h"\nint answer(void) { return 6 * 7; }\n',
    "proj/main.c": (
        '#include <stdio.h>\n#include "greet.h"\n#include "calc.h"\n'
        'int main(void) { printf("%s: %d\\n", greeting(), answer()); return 0; }\n'
    ),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, node_ref, gcc_ref):
    r = workload_store(str(tmp_path_factory.mktemp("workloads")), registry, node_ref, gcc_ref)
    files = {"server.js": SERVER_JS, "pbkdf2.js": PBKDF2_JS, "threads.c": THREADS_C, **PROJECT}
    r.src = write_files(str(tmp_path_factory.mktemp("src")), files)
    yield r
    r("rm", "-af", "-t", "0", timeout=300)
    r.cleanup()


@pytest.fixture(scope="module", params=DRIVERS)
def node(request, store, node_ref):
    """A node container per driver, running server.js published on -p."""
    port = free_port()
    name = start(
        store, request.param, f"node-{request.param}", "-p", f"{port}:8080",
        "-v", f"{store.src}:/src:ro", node_ref, "node", "/src/server.js",
    )  # fmt: skip
    yield SimpleNamespace(name=name, url=f"http://127.0.0.1:{port}")
    store("rm", "-f", "-t", "0", name, timeout=120)


@pytest.fixture(scope="module", params=DRIVERS)
def gcc(request, store, gcc_ref):
    name = start(
        store, request.param, f"gcc-{request.param}", "--network", "none",
        "-v", f"{store.src}:/src:ro", gcc_ref, "sleep", "infinity",
    )  # fmt: skip
    yield name
    store("rm", "-f", "-t", "0", name, timeout=120)


def test_node_http_server_on_published_port(store, node):
    got = json.loads(wait_for_http(f"{node.url}/hello"))
    assert got == {"path": "/hello", "hostname": got["hostname"], "uid": 0}
    assert got["hostname"] and got["hostname"] in store("ps", "--no-trunc").stdout
    assert json.loads(curl(f"{node.url}/again"))["path"] == "/again"
    assert "listening on 8080" in store("logs", node.name).stdout


def test_node_libuv_thread_pool(store, node):
    got = json.loads(exec_ok(store, node.name, "node", "/src/pbkdf2.js"))
    want = [
        hashlib.pbkdf2_hmac("sha256", b"secret", f"salt{i}".encode(), 50000, 32).hex()
        for i in range(8)
    ]
    assert got["keys"] == want
    # the main thread, V8's platform threads and libuv's four pool threads
    assert got["maxThreads"] > 4


def test_gcc_threaded_program(gcc, store):
    out = exec_ok(
        store,
        gcc,
        "sh",
        "-c",
        "gcc -O2 -Wall -pthread -o /tmp/threads /src/threads.c && /tmp/threads",
    )
    total = sum(sum(k % (i + 1) for k in range(100000)) for i in range(8))
    assert out == f"8 threads, total {total}\n"


def test_make_j2(gcc, store):
    out = exec_ok(
        store, gcc, "sh", "-c", "cp -r /src/proj /tmp/ && make -C /tmp/proj -j2 && /tmp/proj/app"
    )
    lines = out.splitlines()
    for obj in ("main.o", "greet.o", "calc.o"):
        assert any(f"-c -o {obj}" in line for line in lines), out
    assert lines[-1] == "hello from make: 42"
    again = exec_ok(store, gcc, "make", "-C", "/tmp/proj", "-j2")
    assert "'app' is up to date" in again
