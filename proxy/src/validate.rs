//! `spar validate`: load and check YAML, naming file, resource and field.

use spar_config::Resources;

use crate::cli::ValidateArgs;

pub fn run(args: &ValidateArgs) -> i32 {
    let mut ok = true;
    match Resources::load_dirs(&args.resources_path) {
        Ok(r) => {
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "resources OK: {} components, {} subscriptions, {} resiliency policies, {} HTTP endpoints",
                r.components.len(),
                r.subscriptions.len(),
                r.resiliencies.len(),
                r.http_endpoints.len()
            );
        }
        Err(e) => {
            eprintln!("{e}");
            ok = false;
        }
    }
    if let Some(c) = &args.config {
        match spar_config::load_configuration(c) {
            Ok(_) => println!("configuration OK: {}", c.display()),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        0
    } else {
        1
    }
}
