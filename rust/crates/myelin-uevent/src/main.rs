//! `myelin-uevent` binary: a thin shell over [`myelin_uevent::cli`].

fn main() -> std::process::ExitCode {
    myelin_uevent::cli::main()
}
