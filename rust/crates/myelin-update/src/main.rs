//! `myelin-update` binary: a thin shell over the [`myelin_update`] library.

fn main() {
    eprintln!("myelin-update: not implemented yet");
    std::process::exit(1);
}
