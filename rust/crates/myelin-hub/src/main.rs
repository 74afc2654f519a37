//! `myelin-hub` binary: a thin shell over [`myelin_hub::cli`].

fn main() -> std::process::ExitCode {
    myelin_hub::cli::main(std::env::args_os().collect())
}
