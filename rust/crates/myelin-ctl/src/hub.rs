//! `myelinctl hub status`: the NervesHub connection, from the status file myelin-hub keeps.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

/// `myelinctl hub ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connection state, server, reconnects, last error and last update.
    Status {
        /// The daemon's status file.
        #[arg(long, default_value = myelin_api::hub::STATUS_PATH)]
        status_file: PathBuf,
    },
}

/// Runs a `hub` command.
pub fn run(command: &Command, json: bool, out: &mut dyn Write) -> anyhow::Result<i32> {
    match command {
        Command::Status { status_file } => {
            let status = myelin_api::hub::read(status_file)?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &status)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", myelin_api::hub::human(&status))?;
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn status_prints_the_daemon_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.json");
        let argv = |json: bool| {
            let mut a = vec!["myelinctl".to_owned()];
            if json {
                a.push("--json".into());
            }
            a.extend(["hub".into(), "status".into(), "--status-file".into()]);
            a.push(file.display().to_string());
            crate::Cli::try_parse_from(a).unwrap()
        };
        let mut out = Vec::new();
        let e = crate::run(&argv(false), &mut out).unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
        std::fs::write(
            &file,
            r#"{"state":"joined","url":"wss://h/socket/websocket","connections":1,"last_error":null,"last_update":"installed 2.0.0"}"#,
        )
        .unwrap();
        assert_eq!(crate::run(&argv(false), &mut out).unwrap(), 0);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("state:        joined"), "{text}");
        assert!(text.contains("last update:  installed 2.0.0"), "{text}");
        let mut out = Vec::new();
        crate::run(&argv(true), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["connections"], 1);
    }
}
