//! `myelin-kv` binary, also installed as `fw_printenv` and `fw_setenv`: a thin shell over
//! [`myelin_kv::cli`].

fn main() -> std::process::ExitCode {
    myelin_kv::cli::main(std::env::args_os().collect())
}
