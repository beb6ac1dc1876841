"""Images: references, registries.conf, auth, the distribution client, the store and layer extraction.

Public entry points: `rootless.image.store.Store` (the local content-addressed store) and
`rootless.image.pull.ensure_image` / `pull_image` (fetch from a registry into the store).
"""
