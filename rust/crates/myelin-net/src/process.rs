//! Supervised programs (udhcpc, udhcpd, wpa_supplicant): started with their output logged line
//! by line (info records, labelled with the interface and program), stopped with SIGTERM (then
//! SIGKILL), and their unexpected exit reported.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use crate::tech::DaemonSpec;

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The spec has no program.
    #[error("{0}: empty command")]
    Empty(String),
    /// The program could not be executed.
    #[error("cannot run {program}")]
    Exec {
        /// Program.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running program.
pub struct Running {
    /// Name from the spec.
    pub name: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Option<ExitStatus>>,
}

impl Running {
    /// Stops the program and waits until it is gone (SIGTERM, SIGKILL after `grace`); returns
    /// how it ended (`None` if that is unknown, or it had already exited on its own).
    pub async fn stop(mut self) -> Option<ExitStatus> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.ok().flatten()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts `spec`; `on_exit(description)` runs if it exits without being asked to.
pub fn spawn(
    ifname: &str,
    spec: &DaemonSpec,
    grace: Duration,
    on_exit: impl FnOnce(String) + Send + 'static,
) -> Result<Running, SpawnError> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| SpawnError::Empty(spec.name.clone()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        program: program.clone(),
        source,
    })?;
    let label = format!("{ifname} {}", spec.name);
    for out in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let label = label.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log::info!("[{label}] {line}");
            }
        });
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tokio::select! {
            status = child.wait() => {
                let what = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                on_exit(what);
                None
            }
            _ = stop_rx => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                match tokio::time::timeout(grace, child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        let _ = child.kill().await;
                        child.wait().await.ok()
                    }
                }
            }
        }
    });
    Ok(Running {
        name: spec.name.clone(),
        stop: Some(stop_tx),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tech::When;

    fn spec(argv: &[&str]) -> DaemonSpec {
        DaemonSpec {
            name: "test".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            when: When::Always,
        }
    }

    #[tokio::test]
    async fn exit_is_reported_stop_is_not() {
        use std::os::unix::process::ExitStatusExt;

        let (tx, rx) = oneshot::channel();
        let _r = spawn(
            "x",
            &spec(&["sh", "-c", "exit 3"]),
            Duration::from_secs(1),
            move |w| {
                let _ = tx.send(w);
            },
        )
        .unwrap();
        let what = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the exit was never reported")
            .unwrap();
        assert!(what.contains('3'), "{what}");

        // A requested stop is SIGTERM, and not reported as an exit. The grace period is far
        // longer than any test machine needs to deliver a signal: only a program that ignores
        // SIGTERM ever reaches it.
        let (tx, mut rx) = oneshot::channel::<String>();
        let r = spawn(
            "x",
            &spec(&["sleep", "30"]),
            Duration::from_secs(600),
            move |w| {
                let _ = tx.send(w);
            },
        )
        .unwrap();
        let status = r.stop().await.expect("no exit status");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
        assert!(rx.try_recv().is_err(), "a requested stop is not an exit");

        // A program that ignores SIGTERM is killed after the grace period. It says when its
        // trap is set, so the signal cannot arrive before.
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let script = format!("trap '' TERM; : > {}; exec sleep 30", ready.display());
        let r = spawn(
            "x",
            &spec(&["sh", "-c", &script]),
            Duration::from_millis(300),
            |_| {},
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            while !ready.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the script never set its trap");
        let status = r.stop().await.expect("no exit status");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }
}
