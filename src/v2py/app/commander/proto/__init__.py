"""Generated protobuf modules (see generate.sh)."""
