//! Myelin-update: A/B firmware updater daemon.
