//! spar-cryptobench: encryption throughput through the sidecar's
//! `EncryptAlpha1` / `DecryptAlpha1` streams (Dapr's `dapr.io/enc/v1`).
//!
//!   spar-cryptobench ADDR COMPONENT KEY ALG FILE [--cipher C] [--rounds N]
//!
//! Streams FILE in 64 KiB chunks through EncryptAlpha1 (answers counted
//! as they arrive), then the ciphertext back through DecryptAlpha1 and
//! checks it is FILE again; the best of N rounds (default 3). Prints
//! `encrypt_MBps decrypt_MBps` (MB = 10^6 bytes, as `openssl speed`).

use std::time::Instant;

use futures::StreamExt;
use spar_proto::common::StreamPayload;
use spar_proto::runtime::dapr_client::DaprClient;
use spar_proto::runtime::{
    DecryptRequest, DecryptRequestOptions, EncryptRequest, EncryptRequestOptions,
};

const CHUNK: usize = 64 * 1024;

fn usage() -> ! {
    eprintln!("usage: spar-cryptobench ADDR COMPONENT KEY ALG FILE [--cipher C] [--rounds N]");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        usage();
    }
    let (addr, component, key, alg, file) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let mut cipher = String::new();
    let mut rounds = 3;
    let mut rest = args[5..].iter();
    while let Some(a) = rest.next() {
        match (a.as_str(), rest.next()) {
            ("--cipher", Some(v)) => cipher = v.clone(),
            ("--rounds", Some(v)) => rounds = v.parse()?,
            _ => usage(),
        }
    }
    let data = std::fs::read(file)?;
    let mut client = DaprClient::connect(format!("http://{addr}")).await?;
    let (mut best_enc, mut best_dec) = (0f64, 0f64);
    for _ in 0..rounds {
        let opts = EncryptRequestOptions {
            component_name: component.clone(),
            key_name: key.clone(),
            key_wrap_algorithm: alg.clone(),
            data_encryption_cipher: cipher.clone(),
            ..Default::default()
        };
        let chunks: Vec<EncryptRequest> = data
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, c)| EncryptRequest {
                options: (i == 0).then(|| opts.clone()),
                payload: Some(StreamPayload {
                    data: c.to_vec(),
                    seq: i as u64,
                }),
            })
            .collect();
        let started = Instant::now();
        let mut answers = client
            .encrypt_alpha1(futures::stream::iter(chunks))
            .await?
            .into_inner();
        let mut doc = Vec::with_capacity(data.len() + data.len() / 4096 + 4096);
        while let Some(m) = answers.next().await {
            doc.extend_from_slice(&m?.payload.unwrap_or_default().data);
        }
        best_enc = best_enc.max(data.len() as f64 / started.elapsed().as_secs_f64() / 1e6);

        let dopts = DecryptRequestOptions {
            component_name: component.clone(),
            key_name: String::new(),
        };
        let chunks: Vec<DecryptRequest> = doc
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, c)| DecryptRequest {
                options: (i == 0).then(|| dopts.clone()),
                payload: Some(StreamPayload {
                    data: c.to_vec(),
                    seq: i as u64,
                }),
            })
            .collect();
        let started = Instant::now();
        let mut answers = client
            .decrypt_alpha1(futures::stream::iter(chunks))
            .await?
            .into_inner();
        let mut back = Vec::with_capacity(data.len());
        while let Some(m) = answers.next().await {
            back.extend_from_slice(&m?.payload.unwrap_or_default().data);
        }
        best_dec = best_dec.max(data.len() as f64 / started.elapsed().as_secs_f64() / 1e6);
        if back != data {
            return Err("decrypted data differs from the input".into());
        }
    }
    println!("{best_enc:.1} {best_dec:.1}");
    Ok(())
}
