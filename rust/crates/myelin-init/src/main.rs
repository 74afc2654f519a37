//! `myelin-init` binary: a thin shell over the [`myelin_init`] library.

fn main() {
    std::process::exit(myelin_init::runtime::main_entry(std::env::args()));
}
