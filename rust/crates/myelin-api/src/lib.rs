//! Myelin-api: every contract between Myelin's processes, and nothing else.
//!
//! Daemons, `myelinctl`, the `myelin` app crate and the fleet client all speak to each other
//! through the definitions here, so a name, an error or a field is written once.
//!
//! * [`logger`]: leveled log records on standard error with the sd-daemon priority prefix
//!   (`<3>` … `<7>`) that myelin-init's log ring parses and `myelinctl log --level` filters.
pub mod logger;
