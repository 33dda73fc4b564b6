# Sourced by the scripts: one build folder outside the clone, so a fresh
# clone (and CI) reuses what an earlier build compiled.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/invigil/target}"
INVIGIL_BIN="$CARGO_TARGET_DIR/release/invigil"
# GStreamer's plugin registry, kept beside the build rather than in $HOME.
export GST_REGISTRY="${GST_REGISTRY:-$CARGO_TARGET_DIR/gst-registry.bin}"
