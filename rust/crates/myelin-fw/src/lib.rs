//! Myelin-fw: fwup-compatible firmware packager and applier.
