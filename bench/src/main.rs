//! innergate benchmark harness. The scenarios of BENCH.md arrive with issue #6.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    eprintln!("innergate-bench: no scenarios yet (issue #6)");
    std::process::exit(2);
}
