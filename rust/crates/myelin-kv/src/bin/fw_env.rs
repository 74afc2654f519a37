//! `fw_env`, installed as `fw_printenv` and `fw_setenv`: libubootenv's two tools without the rest
//! of `myelin-kv` (the D-Bus service, mkenvimage, migrate-nerves), so that they start as fast.
//! A thin shell over [`myelin_kv::cli::fw_main`].

fn main() -> std::process::ExitCode {
    myelin_kv::cli::fw_main(std::env::args_os().collect())
}
