//! myelin-hub's status, as the daemon writes it and `myelinctl hub status` reads it: one JSON
//! file on tmpfs, replaced whole (written aside, then renamed) at every change.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the daemon keeps it.
pub const STATUS_PATH: &str = "/run/myelin/hub.json";

/// The NervesHub connection, as the daemon last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubStatus {
    /// `connecting`, `joined` or `disconnected`.
    pub state: String,
    /// The device socket's URL.
    pub url: String,
    /// Connections attempted since the daemon started (including the current one).
    pub connections: u64,
    /// Why the last connection ended or failed.
    pub last_error: Option<String>,
    /// The last update offered and what became of it.
    pub last_update: Option<String>,
}

/// Why the status cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No file: the daemon is not running, or not configured.
    #[error("{0}: no status (myelin-hub is not running, or NervesHub is not configured)")]
    Missing(String),
    /// Not a status.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads the status file.
pub fn read(path: &Path) -> Result<HubStatus, StatusError> {
    let text = std::fs::read_to_string(path)
        .map_err(|_| StatusError::Missing(path.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| StatusError::Invalid {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The status as text.
pub fn human(s: &HubStatus) -> String {
    let mut out = format!(
        "state:        {}\nserver:       {}\nconnections:  {}\n",
        s.state, s.url, s.connections
    );
    if let Some(e) = &s.last_error {
        out.push_str(&format!("last error:   {e}\n"));
    }
    if let Some(u) = &s.last_update {
        out.push_str(&format!("last update:  {u}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.json");
        assert!(read(&path).unwrap_err().to_string().contains("not running"));
        let s = HubStatus {
            state: "joined".into(),
            url: "wss://h/socket/websocket".into(),
            connections: 2,
            last_error: Some("heartbeat 3 not answered".into()),
            last_update: None,
        };
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        assert!(human(&s).contains("last error:   heartbeat 3 not answered"));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(read(&path), Err(StatusError::Invalid { .. })));
    }
}
