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
            // Types and versions, as start-up would refuse them.
            let registry = spar_components::Registry::default();
            for c in &r.components {
                let checked = if c.kind_prefix() == "middleware" {
                    spar_filters::builtin::middleware::build(c).map(|_| ())
                } else {
                    registry
                        .check(&c.spec.type_, &c.spec.version)
                        .map_err(|e| e.to_string())
                };
                if let Err(e) = checked {
                    let level = if c.spec.ignore_errors {
                        "warning"
                    } else {
                        "error"
                    };
                    eprintln!(
                        "{level}: {}: Component/{}: spec.type: {e}{}",
                        c.source.display(),
                        c.name(),
                        if c.spec.ignore_errors {
                            " (ignoreErrors: the sidecar starts without it)"
                        } else {
                            ""
                        }
                    );
                    ok &= c.spec.ignore_errors;
                }
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
            Ok(conf) => {
                // Pipeline handlers name components of the resources.
                let res = Resources::load_dirs(&args.resources_path).unwrap_or_default();
                let built = crate::boot::pipeline(Some(&conf), &res).and_then(|specs| {
                    specs
                        .iter()
                        .try_for_each(|s| spar_filters::builtin::middleware::build(s).map(|_| ()))
                });
                match built {
                    Ok(()) => println!("configuration OK: {}", c.display()),
                    Err(e) => {
                        eprintln!("error: {}: {e}", c.display());
                        ok = false;
                    }
                }
            }
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
