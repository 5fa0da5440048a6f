//! Release builds place the functions a sidecar runs — start-up and the
//! request paths — next to each other (`link-order.txt`, written by
//! `bench/order.sh`). The kernel maps a binary's code 64 KB around each page
//! touched, so scattered hot code keeps most of `.text` resident; packed,
//! it keeps a few MB (bench/README.md, "Resident memory").
//!
//! lld only (rustc's default linker for x86_64 Linux since 1.90); symbols
//! the list names but the binary lacks are skipped, so a stale list costs
//! memory, never correctness. `SPAR_NO_LINK_ORDER=1` turns it off.
//!
//! Release builds on Linux also link a position-dependent executable, as Go
//! links daprd: a PIE's ≈ 0.8 MB of pointer tables (`.data.rel.ro`) are
//! rewritten by the loader at every start and so held as private memory in
//! every sidecar; linked at a fixed address they stay file pages, loaded
//! only where read. Libraries, heap and stacks stay randomised.
//! `SPAR_PIE=1` builds a PIE.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SPAR_NO_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=SPAR_PIE");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let list = Path::new(&env("CARGO_MANIFEST_DIR")).join("link-order.txt");
    let wanted = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("SPAR_NO_LINK_ORDER").is_none()
        && list.exists()
        && rustc_minor() >= 90;
    if env("PROFILE") == "release"
        && env("CARGO_CFG_TARGET_OS") == "linux"
        && std::env::var_os("SPAR_PIE").is_none()
    {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    if wanted {
        // Only a build that uses the list relinks when it changes
        // (bench/order.sh's own build does not).
        println!("cargo:rerun-if-changed=link-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The `90` of `rustc 1.90.0`; 0 when unknown.
fn rustc_minor() -> u32 {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1)?.split('.').nth(1)?.parse().ok())
        .unwrap_or(0)
}
