"""The Docker Engine API server behind `rootless system service` (docs/api.md).

`server` owns the socket, the connections (HTTP/1.1 through h11, one thread per connection), the
hijacked raw streams and the idle exit; `fds` the descriptors the server owns (closed in every
forked child); `protocol` the request and response types, the Docker-API error JSON and the route
registry; `routing` the dispatch onto it. One module per endpoint group (`system`, `images`,
`containers` with `ctrconfig` (the configuration both ways), `ctrstreams` (logs, attach) and
`ctrstats`, `exec`, `networks`, `volumes`, `archive`, `build`) imports `protocol` (and `fds`),
never `routing` or `server`, and translates requests onto the library (rootless.runtime.api,
rootless.image, rootless.network, rootless.volumes); none runs the CLI. Nothing here is imported
by `rootless run`.
"""
