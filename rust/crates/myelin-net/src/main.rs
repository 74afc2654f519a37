//! `myelin-net` binary (also the udhcpc hook, as `myelin-net-dhcp-hook`): a thin shell over
//! [`myelin_net::cli`].

fn main() -> std::process::ExitCode {
    myelin_net::cli::main(std::env::args_os().collect())
}
