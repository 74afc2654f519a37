//! `myelin-fw` binary: a thin shell over the [`myelin_fw`] library.

fn main() {
    eprintln!("myelin-fw: not implemented yet");
    std::process::exit(1);
}
