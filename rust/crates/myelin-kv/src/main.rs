//! `myelin-kv` binary, the multi-call program (it also answers as `fw_printenv` and `fw_setenv`,
//! which the device links to the smaller `fw_env`): a thin shell over [`myelin_kv::cli`].

fn main() -> std::process::ExitCode {
    myelin_kv::cli::main(std::env::args_os().collect())
}
