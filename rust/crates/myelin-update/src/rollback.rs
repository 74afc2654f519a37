//! Rollback protection: an archive older than the running firmware is refused unless the
//! install explicitly allows a downgrade.
//!
//! An old archive keeps its valid signature forever; without this check anyone able to start
//! an install could put back a firmware with known holes. Versions are compared as semantic
//! versions (`meta-version`, `MAJOR.MINOR.PATCH[-pre][+build]`, an optional leading `v`).
//! When either side is not one (or is missing), the versions cannot be ordered: the install
//! goes ahead with a warning rather than blocking a product whose versions are not semver.

/// Why an install was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// The archive is older than what runs.
    #[error(
        "refusing to install version {new} over the running version {running}: it is older (a downgrade). Install it with allow-downgrade (myelin-update install --allow-downgrade, or the D-Bus option \"allow-downgrade\") to do it anyway"
    )]
    Downgrade {
        /// The running firmware's version.
        running: String,
        /// The archive's version.
        new: String,
    },
}

/// What the check decided when it did not refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Same or newer version.
    Upgrade,
    /// Older, and the install allowed it.
    Downgrade,
    /// The versions cannot be ordered; why, for a warning.
    Unordered(String),
}

fn parse(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok()
}

/// Checks an archive of version `new` against the running version `running`.
pub fn check(
    running: Option<&str>,
    new: Option<&str>,
    allow_downgrade: bool,
) -> Result<Allowed, RollbackError> {
    let (Some(running), Some(new)) = (running, new) else {
        return Ok(Allowed::Unordered(format!(
            "cannot tell whether this is a downgrade: the {} firmware has no version",
            if running.is_none() { "running" } else { "new" }
        )));
    };
    let (Some(r), Some(n)) = (parse(running), parse(new)) else {
        return Ok(Allowed::Unordered(format!(
            "cannot tell whether {new} is older than the running {running}: not semantic versions"
        )));
    };
    if n >= r {
        Ok(Allowed::Upgrade)
    } else if allow_downgrade {
        Ok(Allowed::Downgrade)
    } else {
        Err(RollbackError::Downgrade {
            running: running.to_owned(),
            new: new.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_is_refused_naming_both_versions_unless_allowed() {
        let err = check(Some("2.1.0"), Some("2.0.9"), false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("2.1.0") && msg.contains("2.0.9"), "{msg}");
        assert!(msg.contains("allow-downgrade"), "{msg}");
        assert_eq!(
            check(Some("2.1.0"), Some("2.0.9"), true),
            Ok(Allowed::Downgrade)
        );
        // A pre-release of the running version is older too.
        assert!(check(Some("v2.1.0"), Some("2.1.0-rc.1"), false).is_err());
    }

    #[test]
    fn same_or_newer_goes_ahead_and_unordered_versions_warn() {
        assert_eq!(
            check(Some("1.0.0"), Some("1.0.0"), false),
            Ok(Allowed::Upgrade)
        );
        assert_eq!(
            check(Some("1.9.0"), Some("1.10.0"), false),
            Ok(Allowed::Upgrade)
        );
        assert!(matches!(
            check(Some("2024-06"), Some("2023-01"), false),
            Ok(Allowed::Unordered(_))
        ));
        assert!(matches!(
            check(None, Some("1.0.0"), false),
            Ok(Allowed::Unordered(_))
        ));
    }
}
