//! `myelinctl` binary: a thin shell over the [`myelin_ctl`] library.

fn main() {
    eprintln!("myelinctl: not implemented yet");
    std::process::exit(1);
}
