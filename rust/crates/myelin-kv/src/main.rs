//! `myelin-kv` binary: a thin shell over the [`myelin_kv`] library.

fn main() {
    eprintln!("myelin-kv: not implemented yet");
    std::process::exit(1);
}
