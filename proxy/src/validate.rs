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
            // Compiling the policies checks what parsing cannot (trip
            // expressions, durations of named timeouts).
            let labels = spar_filters::resiliency::Labels {
                metrics: None,
                app_id: String::new(),
                namespace: String::new(),
            };
            let all: Vec<_> = r
                .resiliencies
                .iter()
                .cloned()
                .map(|mut x| {
                    x.scopes.clear();
                    x
                })
                .collect();
            if let Err(e) =
                spar_filters::resiliency::Resiliency::compile(&all, labels, |_| "component")
            {
                eprintln!("Resiliency {e}");
                ok = false;
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
