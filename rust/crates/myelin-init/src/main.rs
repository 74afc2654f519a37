//! `myelin-init` binary: a thin shell over the [`myelin_init`] library.

fn main() {
    eprintln!("myelin-init: not implemented yet");
    std::process::exit(1);
}
