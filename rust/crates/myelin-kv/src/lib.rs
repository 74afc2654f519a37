//! Myelin-kv: the U-Boot environment as a power-fail-safe key/value store.
