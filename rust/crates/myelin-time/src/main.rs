//! `myelin-time` binary (also busybox ntpd's `-S` hook, as `myelin-time-ntpd-hook`): a thin
//! shell over [`myelin_time::cli`].

fn main() -> std::process::ExitCode {
    myelin_time::cli::main(std::env::args_os().collect())
}
