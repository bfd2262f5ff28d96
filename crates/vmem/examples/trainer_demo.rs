//! Prints a translation exercise with its answers (the `vmem translate` command does the
//! same with more options): `cargo run -p vmem --example trainer_demo -- multi 7`.
//! Modes: linear, multi, seg, segpage.

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "linear".into());
    let Some(mode) = vmem::trainer::Mode::parse(&arg) else {
        eprintln!("unknown mode {arg:?}: use linear, multi, seg or segpage");
        std::process::exit(2);
    };
    let seed: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    print!("{}", vmem::trainer::generate(mode, seed, 4).render(true));
}
