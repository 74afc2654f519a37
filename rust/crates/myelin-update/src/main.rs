//! `myelin-update` binary: a thin shell over [`myelin_update::cli`].

fn main() -> std::process::ExitCode {
    myelin_update::cli::main(std::env::args_os().collect())
}
