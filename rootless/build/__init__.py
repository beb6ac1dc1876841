"""Building images from a Containerfile or Dockerfile (`rootless build`), and the image loop around it:
commit, history, diff, import and export.

Modules: parse (the Containerfile, through dockerfile-parse), words (variable expansion and word
splitting as the Dockerfile reference defines them), instructions (what each instruction does to
the image config), context (the build context, .containerignore, COPY sources and their digests),
view (a read-only merged view of a layer stack),
commit (new images in the store), copy (COPY/ADD layers), step (the one adapter to the container
runtime, for RUN), cache (the build cache and intermediate images), builder (the stage loop),
ns (running a function as root in the user namespace).
"""
