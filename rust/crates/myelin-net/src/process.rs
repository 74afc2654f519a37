//! Supervised programs (udhcpc, udhcpd, wpa_supplicant): started with their output logged line
//! by line, stopped with SIGTERM (then SIGKILL), and their unexpected exit reported.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use crate::tech::DaemonSpec;

/// A running program.
pub struct Running {
    /// Name from the spec.
    pub name: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the program and waits until it is gone (SIGTERM, SIGKILL after `grace`).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
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
) -> std::io::Result<Running> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other(format!("{}: empty command", spec.name)))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
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
                eprintln!("myelin-net: [{label}] {line}");
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
            }
            _ = stop_rx => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.kill().await;
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
        let what = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        assert!(what.contains('3'), "{what}");

        let (tx, mut rx) = oneshot::channel::<String>();
        let r = spawn(
            "x",
            &spec(&["sleep", "30"]),
            Duration::from_secs(1),
            move |w| {
                let _ = tx.send(w);
            },
        )
        .unwrap();
        let t = std::time::Instant::now();
        r.stop().await;
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(rx.try_recv().is_err(), "a requested stop is not an exit");

        // A program that ignores SIGTERM is killed after the grace period.
        let r = spawn(
            "x",
            &spec(&["sh", "-c", "trap '' TERM; sleep 30"]),
            Duration::from_millis(300),
            |_| {},
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = std::time::Instant::now();
        r.stop().await;
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
