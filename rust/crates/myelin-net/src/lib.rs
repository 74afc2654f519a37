//! Myelin-net: network manager daemon.
