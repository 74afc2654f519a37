//! `myelinctl` binary: a thin shell over the [`myelin_ctl`] library.

use clap::Parser;

fn main() {
    let cli = myelin_ctl::Cli::parse();
    let mut out = std::io::stdout().lock();
    match myelin_ctl::run(&cli, &mut out) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("myelinctl: {}", myelin_ctl::error_message(&e));
            std::process::exit(1);
        }
    }
}
