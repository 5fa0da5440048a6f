//! The cryptography building block against the real binary: Dapr's
//! `dapr.io/enc/v1` streams over gRPC (the official Rust crate's generated
//! client and its `encrypt`/`decrypt` helpers), the HTTP routes, the subtle
//! operations, bad input on every route, backpressure, JWKS from a URL and
//! a file, `secretKeyRef`, hot reload, metadata and metrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dapr::dapr::proto::common::v1::StreamPayload;
use dapr::dapr::proto::runtime::v1::{self as pb, dapr_client::DaprClient};
use futures::StreamExt;
use reqwest::Client;
use serde_json::{json, Value};
use spar_components::crypto::conformance as fx;
use spar_components::crypto::scheme::{self, Cipher, FileKey, KeyWrap};
use spar_tests::{Options, Sidecar};
use tonic::transport::Channel;

const SEGMENT: usize = 64 * 1024;

/// A second symmetric key, to decrypt with the wrong one.
const OTHER_256_B64: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

fn localstorage(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: crypto.dapr.localstorage\n  version: v1\n  metadata:\n  - name: path\n    value: \"{{dir}}\"\n"
    )
}

fn jwks_inline(name: &str) -> String {
    let set = fx::jwks_json(&names_jwks());
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: crypto.dapr.jwks\n  version: v1\n  metadata:\n  - name: jwks\n    value: {}\n",
        serde_json::to_string(&set).unwrap()
    )
}

fn names_jwks() -> fx::Names<'static> {
    fx::Names {
        rsa: "rsa",
        ec: "ec",
        ed25519: "ed",
        symmetric: "sym",
        missing: "missing",
    }
}

const KEY_FILES: [(&str, &str); 5] = [
    ("rsa-private.pem", fx::RSA_PRIVATE_PEM),
    ("ec-p256.pem", fx::EC_P256_PEM),
    ("ed25519.pem", fx::ED25519_PEM),
    ("symmetric-256", fx::SYMMETRIC_256_B64),
    ("other-256", OTHER_256_B64),
];

fn sidecar() -> Sidecar {
    Sidecar::start_with_files(
        Options {
            resources: vec![localstorage("keys"), jwks_inline("jwks")],
            ..Default::default()
        },
        &KEY_FILES,
    )
}

async fn grpc(sc: &Sidecar) -> DaprClient<Channel> {
    DaprClient::connect(sc.grpc()).await.expect("connect")
}

fn enc_opts(component: &str, key: &str, alg: &str) -> pb::EncryptRequestOptions {
    pb::EncryptRequestOptions {
        component_name: component.into(),
        key_name: key.into(),
        key_wrap_algorithm: alg.into(),
        ..Default::default()
    }
}

fn dec_opts(component: &str) -> pb::DecryptRequestOptions {
    pb::DecryptRequestOptions {
        component_name: component.into(),
        key_name: String::new(),
    }
}

/// The plaintext of a test: bytes of a simple pattern, produced lazily.
fn pattern(len: usize, chunk: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..len.div_ceil(chunk)).map(move |i| {
        let start = i * chunk;
        (start..(start + chunk).min(len))
            .map(|j| (j % 251) as u8)
            .collect()
    })
}

fn messages_enc(
    opts: pb::EncryptRequestOptions,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> impl futures::Stream<Item = pb::EncryptRequest> + Send + 'static {
    let mut opts = Some(opts);
    futures::stream::iter(chunks.enumerate().map(move |(i, data)| pb::EncryptRequest {
        options: opts.take(),
        payload: Some(StreamPayload {
            data,
            seq: i as u64,
        }),
    }))
    .chain(futures::stream::iter(None))
}

fn messages_dec(
    opts: pb::DecryptRequestOptions,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> impl futures::Stream<Item = pb::DecryptRequest> + Send + 'static {
    let mut opts = Some(opts);
    futures::stream::iter(chunks.enumerate().map(move |(i, data)| pb::DecryptRequest {
        options: opts.take(),
        payload: Some(StreamPayload {
            data,
            seq: i as u64,
        }),
    }))
}

/// Options only, no data: the first message of an empty message.
fn only_options_enc(opts: pb::EncryptRequestOptions) -> Vec<pb::EncryptRequest> {
    vec![pb::EncryptRequest {
        options: Some(opts),
        payload: None,
    }]
}

async fn encrypt(
    c: &mut DaprClient<Channel>,
    req: impl tonic::IntoStreamingRequest<Message = pb::EncryptRequest>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut s = c.encrypt_alpha1(req).await?.into_inner();
    let mut out = Vec::new();
    let mut seq = 0;
    while let Some(m) = s.next().await {
        let p = m?.payload.expect("payload");
        assert_eq!(p.seq, seq, "answers are numbered from 0");
        seq += 1;
        out.extend_from_slice(&p.data);
    }
    Ok(out)
}

/// The plaintext received, and the error that ended the stream if any.
async fn decrypt(
    c: &mut DaprClient<Channel>,
    req: impl tonic::IntoStreamingRequest<Message = pb::DecryptRequest>,
) -> (Vec<u8>, Option<tonic::Status>) {
    let mut s = match c.decrypt_alpha1(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        match m {
            Ok(m) => out.extend_from_slice(&m.payload.expect("payload").data),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn chunks_of(doc: &[u8], n: usize) -> std::vec::IntoIter<Vec<u8>> {
    doc.chunks(n.max(1))
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>()
        .into_iter()
}

/// The document's header, checked against the format's rules.
fn check_format(doc: &[u8], plaintext_len: usize, key_name: Option<&str>, kw: u64, cph: u64) {
    let (h, used) = scheme::parse_header(doc)
        .unwrap()
        .expect("a complete header");
    let text = std::str::from_utf8(&doc[..used]).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines[0], "dapr.io/enc/v1");
    let m: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(m.get("k").and_then(Value::as_str), key_name);
    assert_eq!(m["kw"], kw);
    assert_eq!(m["cph"], cph);
    assert_eq!(h.nonce_prefix.len(), 7);
    let segments = plaintext_len.div_ceil(SEGMENT);
    assert_eq!(doc.len(), used + plaintext_len + 16 * segments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_round_trip_every_size_key_and_cipher() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    for (component, key, alg, kw) in [
        ("keys", "symmetric-256", "A256KW", 1),
        ("keys", "rsa-private.pem", "RSA-OAEP-256", 5),
        ("jwks", "sym", "AES", 1),
        ("jwks", "rsa", "rsa", 5),
    ] {
        for (cipher, cph) in [("", 1), ("chacha20-poly1305", 2)] {
            for len in [0, 1, SEGMENT, SEGMENT + 1] {
                let mut o = enc_opts(component, key, alg);
                o.data_encryption_cipher = cipher.into();
                let doc = if len == 0 {
                    encrypt(&mut c, futures::stream::iter(only_options_enc(o))).await
                } else {
                    encrypt(&mut c, messages_enc(o, pattern(len, 4000))).await
                }
                .unwrap_or_else(|e| panic!("{component}/{key} {len}: {e}"));
                check_format(&doc, len, Some(key), kw, cph);
                let (pt, err) = decrypt(
                    &mut c,
                    messages_dec(dec_opts(component), chunks_of(&doc, 3001)),
                )
                .await;
                assert!(err.is_none(), "{component}/{key} {len}: {err:?}");
                assert_eq!(pt, pattern(len, len.max(1)).flatten().collect::<Vec<_>>());
            }
        }
    }
}

/// 10 MB each way, streamed in 64 KiB chunks; the plaintext comes back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_stream_through() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    let hwm_before = peak_rss_kb(sc.child.id());
    let len = 10 * 1024 * 1024;
    let doc = encrypt(
        &mut c,
        messages_enc(
            enc_opts("keys", "symmetric-256", "A256KW"),
            pattern(len, SEGMENT),
        ),
    )
    .await
    .unwrap();
    check_format(&doc, len, Some("symmetric-256"), 1, 1);
    let (pt, err) = decrypt(
        &mut c,
        messages_dec(dec_opts("keys"), chunks_of(&doc, SEGMENT)),
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pt.len(), len);
    assert!(pt.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    let hwm_after = peak_rss_kb(sc.child.id());
    eprintln!("sidecar peak RSS: {hwm_before} kB before, {hwm_after} kB after 2 × 10 MB");
}

/// The process's peak resident set (VmHWM), in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A client that stops reading the answers stops the sidecar reading its
/// upload: what the client could hand over settles far below the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_holds_back_the_upload() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    let hwm_before = peak_rss_kb(sc.child.id());
    let total = 48 * 1024 * 1024;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let opts = enc_opts("keys", "symmetric-256", "A256KW");
    let upload = messages_enc(opts, pattern(total, SEGMENT)).map(move |m| {
        counter.fetch_add(
            m.payload.as_ref().map_or(0, |p| p.data.len()),
            Ordering::SeqCst,
        );
        m
    });
    let mut answers = c.encrypt_alpha1(upload).await.unwrap().into_inner();
    // Wait until the upload stalls (unchanged for 1 s) or is all sent.
    let mut last = usize::MAX;
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = pulled.load(Ordering::SeqCst);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > Duration::from_secs(1) || now >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upload neither stalled nor finished"
        );
    }
    eprintln!("the upload stalled after {last} of {total} bytes");
    assert!(
        last < 16 * 1024 * 1024,
        "the sidecar took {last} bytes of {total} from a client that read nothing"
    );
    // Reading resumes the flow, and the document is complete.
    let mut got = 0;
    while let Some(m) = answers.next().await {
        got += m.unwrap().payload.unwrap().data.len();
    }
    assert_eq!(pulled.load(Ordering::SeqCst), total);
    assert!(got > total + total / SEGMENT * 16);
    // 48 MiB went through; the sidecar's peak memory grew by far less.
    let grown_kb = peak_rss_kb(sc.child.id()).saturating_sub(hwm_before);
    eprintln!("sidecar peak RSS grew {grown_kb} kB");
    assert!(
        grown_kb < 24 * 1024,
        "sidecar peak RSS grew {grown_kb} kB for a 48 MiB stream"
    );
}

/// A document built by hand from the format (fixed file key and nonce
/// prefix, file key wrapped with the fixture key by RFC 3394) decrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypts_a_document_built_from_the_spec() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    let fk: [u8; 32] = std::array::from_fn(|i| i as u8);
    let key = spar_components::crypto::Key::parse(
        fx::SYMMETRIC_256_B64.as_bytes(),
        spar_components::crypto::Format::Guess,
    )
    .unwrap();
    let (wrapped, _) =
        spar_components::crypto::ops::encrypt(&key, &fk, "A256KW", &[], &[]).unwrap();
    let file_key = FileKey::import(fk, *b"crypto!", Cipher::AesGcm);
    let mut doc = file_key.header("symmetric-256", KeyWrap::A256Kw, &wrapped, Cipher::AesGcm);
    let mut sealer = scheme::Sealer::new(file_key);
    sealer
        .push(b"hello world", &mut |s| doc.extend_from_slice(&s))
        .unwrap();
    doc.extend_from_slice(&sealer.finish().unwrap());
    let (pt, err) = decrypt(&mut c, messages_dec(dec_opts("keys"), chunks_of(&doc, 7))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pt, b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_wrong_key_and_truncation_yield_no_plaintext() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    let small = encrypt(
        &mut c,
        messages_enc(
            enc_opts("keys", "symmetric-256", "A256KW"),
            pattern(1000, 1000),
        ),
    )
    .await
    .unwrap();
    let (h, hl) = scheme::parse_header(&small).unwrap().unwrap();
    assert_eq!(h.key_name, "symmetric-256");

    let fails = |r: (Vec<u8>, Option<tonic::Status>), what: &str, msg: &str| {
        let (pt, err) = r;
        let err = err.unwrap_or_else(|| panic!("{what}: no error"));
        assert!(pt.is_empty(), "{what}: {} bytes of plaintext", pt.len());
        assert_eq!(err.code(), tonic::Code::Internal, "{what}");
        assert!(err.message().contains(msg), "{what}: {}", err.message());
    };
    // One bit of the segment flipped.
    let mut bad = small.clone();
    bad[hl + 10] ^= 1;
    fails(
        decrypt(&mut c, messages_dec(dec_opts("keys"), chunks_of(&bad, 500))).await,
        "tampered",
        "failed to perform operation: error processing segment 0: failed to decrypt segment",
    );
    // The manifest edited: its MAC no longer matches.
    let text = String::from_utf8_lossy(&small[..hl]).replace("\"cph\":1", "\"cph\":2");
    let mut edited = text.into_bytes();
    edited.extend_from_slice(&small[hl..]);
    fails(
        decrypt(
            &mut c,
            messages_dec(dec_opts("keys"), chunks_of(&edited, 500)),
        )
        .await,
        "edited header",
        "failed to validate the document's signature",
    );
    // Another key than the one it was wrapped with.
    let mut o = dec_opts("keys");
    o.key_name = "other-256".into();
    fails(
        decrypt(&mut c, messages_dec(o, chunks_of(&small, 500))).await,
        "wrong key",
        "failed to validate the document's signature",
    );
    // Cut inside the segment, and inside its tag.
    for cut in [hl + 500, small.len() - 3] {
        fails(
            decrypt(
                &mut c,
                messages_dec(dec_opts("keys"), chunks_of(&small[..cut], 500)),
            )
            .await,
            "truncated",
            "error processing segment 0",
        );
    }
    // Cut at a segment boundary of a longer message: the first segment is
    // authentic and delivered, then the stream fails.
    let long = encrypt(
        &mut c,
        messages_enc(
            enc_opts("keys", "symmetric-256", "A256KW"),
            pattern(3 * SEGMENT, SEGMENT),
        ),
    )
    .await
    .unwrap();
    let (_, hl) = scheme::parse_header(&long).unwrap().unwrap();
    let (pt, err) = decrypt(
        &mut c,
        messages_dec(
            dec_opts("keys"),
            chunks_of(&long[..hl + 2 * (SEGMENT + 16)], 9000),
        ),
    )
    .await;
    let err = err.expect("a truncated stream fails");
    assert!(
        err.message().contains("error processing segment 1"),
        "{}",
        err.message()
    );
    assert!(pt.len() <= SEGMENT, "only verified segments are delivered");
    // Cut inside the header.
    fails(
        decrypt(
            &mut c,
            messages_dec(dec_opts("keys"), chunks_of(&small[..20], 5)),
        )
        .await,
        "header cut",
        "invalid header: manifest not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_key_name_options() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    // omitDecryptionKeyName: no name in the manifest, so decryption needs one.
    let mut o = enc_opts("keys", "symmetric-256", "A256KW");
    o.omit_decryption_key_name = true;
    let doc = encrypt(&mut c, messages_enc(o, pattern(10, 10)))
        .await
        .unwrap();
    check_format(&doc, 10, None, 1, 1);
    let (_, err) = decrypt(&mut c, messages_dec(dec_opts("keys"), chunks_of(&doc, 100))).await;
    let err = err.unwrap();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(
        err.message().contains("does not contain a key name"),
        "{}",
        err.message()
    );
    let mut d = dec_opts("keys");
    d.key_name = "symmetric-256".into();
    let (pt, err) = decrypt(&mut c, messages_dec(d, chunks_of(&doc, 100))).await;
    assert!(err.is_none());
    assert_eq!(pt.len(), 10);
    // decryptionKeyName: written to the manifest instead of keyName.
    let mut o = enc_opts("keys", "rsa-private.pem", "RSA-OAEP-256");
    o.decryption_key_name = "rsa-private.pem/v1".into();
    let doc = encrypt(&mut c, messages_enc(o, pattern(10, 10)))
        .await
        .unwrap();
    check_format(&doc, 10, Some("rsa-private.pem/v1"), 5, 1);
}

/// daprd's answers to bad input on every crypto RPC: codes and messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_grpc_api() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    let enc_err = |c: &mut DaprClient<Channel>, msgs: Vec<pb::EncryptRequest>| {
        let mut c = c.clone();
        async move {
            encrypt(&mut c, futures::stream::iter(msgs))
                .await
                .unwrap_err()
        }
    };
    let check = |e: tonic::Status, code: tonic::Code, msg: &str| {
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(
            e.message().contains(msg),
            "{:?} does not contain {msg:?}",
            e.message()
        );
    };
    let no_opts = vec![pb::EncryptRequest {
        options: None,
        payload: Some(StreamPayload {
            data: vec![1],
            seq: 0,
        }),
    }];
    check(
        enc_err(&mut c, no_opts).await,
        tonic::Code::InvalidArgument,
        "invalid request: first message does not contain the required options",
    );
    check(
        enc_err(&mut c, only_options_enc(enc_opts("keys", "", "A256KW"))).await,
        tonic::Code::InvalidArgument,
        "missing property 'keyName' in the options message",
    );
    check(
        enc_err(&mut c, only_options_enc(enc_opts("keys", "k", ""))).await,
        tonic::Code::InvalidArgument,
        "missing property 'keyWrapAlgorithm' in the options message",
    );
    check(
        enc_err(&mut c, only_options_enc(enc_opts("nope", "k", "A256KW"))).await,
        tonic::Code::InvalidArgument,
        "crypto provider nope not found",
    );
    check(
        enc_err(&mut c, only_options_enc(enc_opts("", "k", "A256KW"))).await,
        tonic::Code::InvalidArgument,
        "missing component name",
    );
    check(
        enc_err(
            &mut c,
            only_options_enc(enc_opts("keys", "symmetric-256", "A128GCM")),
        )
        .await,
        tonic::Code::Internal,
        "option Algorithm is not valid: algorithm A128GCM is not supported",
    );
    let mut o = enc_opts("keys", "symmetric-256", "A256KW");
    o.data_encryption_cipher = "DES".into();
    check(
        enc_err(&mut c, only_options_enc(o)).await,
        tonic::Code::Internal,
        "option Cipher is not valid: cipher DES is not supported",
    );
    // Keys that cannot wrap: missing, outside the folder, the wrong kind.
    for (key, alg) in [
        ("missing", "A256KW"),
        ("../etc/passwd", "A256KW"),
        ("rsa-private.pem", "A256KW"),
        ("symmetric-256", "RSA-OAEP-256"),
        ("symmetric-256", "A256CBC-NOPAD"),
    ] {
        check(
            enc_err(&mut c, only_options_enc(enc_opts("keys", key, alg))).await,
            tonic::Code::Internal,
            "failed to perform operation: failed to wrap the file key",
        );
    }
    // Chunks out of order, and options repeated.
    let mut msgs = only_options_enc(enc_opts("keys", "symmetric-256", "A256KW"));
    msgs.push(pb::EncryptRequest {
        options: None,
        payload: Some(StreamPayload {
            data: vec![1],
            seq: 3,
        }),
    });
    check(
        enc_err(&mut c, msgs).await,
        tonic::Code::Internal,
        "invalid sequence number received: 3 (expected: 0)",
    );
    let mut msgs = messages_enc(enc_opts("keys", "symmetric-256", "A256KW"), pattern(10, 10))
        .collect::<Vec<_>>()
        .await;
    msgs.push(pb::EncryptRequest {
        options: Some(enc_opts("keys", "symmetric-256", "A256KW")),
        payload: None,
    });
    check(
        enc_err(&mut c, msgs).await,
        tonic::Code::Internal,
        "options found in non-leading message",
    );
    // Decrypt: no options, unknown component, not a document.
    let (_, e) = decrypt(
        &mut c,
        futures::stream::iter(vec![pb::DecryptRequest {
            options: None,
            payload: None,
        }]),
    )
    .await;
    check(
        e.unwrap(),
        tonic::Code::InvalidArgument,
        "first message does not contain the required options",
    );
    let (_, e) = decrypt(&mut c, messages_dec(dec_opts("nope"), chunks_of(b"x", 1))).await;
    check(
        e.unwrap(),
        tonic::Code::InvalidArgument,
        "crypto provider nope not found",
    );
    let (_, e) = decrypt(
        &mut c,
        messages_dec(dec_opts("keys"), chunks_of(b"not a document\nat all\n", 4)),
    )
    .await;
    check(
        e.unwrap(),
        tonic::Code::Internal,
        "invalid header: unsupported scheme",
    );
    let (_, e) = decrypt(&mut c, messages_dec(dec_opts("keys"), std::iter::empty())).await;
    check(
        e.unwrap(),
        tonic::Code::Internal,
        "failed to perform operation",
    );

    // Subtle: unknown component, key format, missing key.
    let e = c
        .subtle_get_key_alpha1(pb::SubtleGetKeyRequest {
            component_name: "nope".into(),
            name: "k".into(),
            format: 0,
        })
        .await
        .unwrap_err();
    check(
        e,
        tonic::Code::InvalidArgument,
        "crypto provider nope not found",
    );
    let e = c
        .subtle_get_key_alpha1(pb::SubtleGetKeyRequest {
            component_name: "keys".into(),
            name: "rsa-private.pem".into(),
            format: 7,
        })
        .await
        .unwrap_err();
    check(
        e,
        tonic::Code::InvalidArgument,
        "invalid request: invalid key format",
    );
    for name in ["missing", "symmetric-256", "../secret"] {
        let e = c
            .subtle_get_key_alpha1(pb::SubtleGetKeyRequest {
                component_name: "keys".into(),
                name: name.into(),
                format: 0,
            })
            .await
            .unwrap_err();
        check(
            e,
            tonic::Code::Internal,
            &format!("failed to retrieve key {name}"),
        );
    }
    let e = c
        .subtle_encrypt_alpha1(pb::SubtleEncryptRequest {
            component_name: "keys".into(),
            key_name: "symmetric-256".into(),
            algorithm: "A256GCM".into(),
            plaintext: b"x".to_vec(),
            nonce: vec![0; 3],
            ..Default::default()
        })
        .await
        .unwrap_err();
    check(
        e,
        tonic::Code::Internal,
        "failed to perform operation: failed to encrypt",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtle_operations_over_grpc() {
    let sc = sidecar();
    let mut c = grpc(&sc).await;
    for component in ["keys", "jwks"] {
        let (rsa, ec, sym) = if component == "keys" {
            ("rsa-private.pem", "ec-p256.pem", "symmetric-256")
        } else {
            ("rsa", "ec", "sym")
        };
        let k = c
            .subtle_get_key_alpha1(pb::SubtleGetKeyRequest {
                component_name: component.into(),
                name: rsa.into(),
                format: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (k.name.as_str(), k.public_key.as_str()),
            (rsa, fx::RSA_PUBLIC_PEM)
        );
        let k = c
            .subtle_get_key_alpha1(pb::SubtleGetKeyRequest {
                component_name: component.into(),
                name: ec.into(),
                format: 1,
            })
            .await
            .unwrap()
            .into_inner();
        let jwk: Value = serde_json::from_str(&k.public_key).unwrap();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert!(jwk.get("d").is_none(), "never the private part");

        let nonce = vec![5u8; 12];
        let e = c
            .subtle_encrypt_alpha1(pb::SubtleEncryptRequest {
                component_name: component.into(),
                key_name: sym.into(),
                algorithm: "A256GCM".into(),
                plaintext: b"subtle".to_vec(),
                nonce: nonce.clone(),
                associated_data: b"ad".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(e.tag.len(), 16);
        let d = c
            .subtle_decrypt_alpha1(pb::SubtleDecryptRequest {
                component_name: component.into(),
                key_name: sym.into(),
                algorithm: "A256GCM".into(),
                ciphertext: e.ciphertext.clone(),
                nonce,
                tag: e.tag,
                associated_data: b"ad".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.plaintext, b"subtle");

        let w = c
            .subtle_wrap_key_alpha1(pb::SubtleWrapKeyRequest {
                component_name: component.into(),
                key_name: rsa.into(),
                algorithm: "RSA-OAEP-256".into(),
                plaintext_key: vec![0x11; 32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let u = c
            .subtle_unwrap_key_alpha1(pb::SubtleUnwrapKeyRequest {
                component_name: component.into(),
                key_name: rsa.into(),
                algorithm: "RSA-OAEP-256".into(),
                wrapped_key: w.wrapped_key,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(u.plaintext_key, vec![0x11; 32]);

        let digest = vec![0x42; 32];
        let s = c
            .subtle_sign_alpha1(pb::SubtleSignRequest {
                component_name: component.into(),
                key_name: ec.into(),
                algorithm: "ES256".into(),
                digest: digest.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        for (d, want) in [(digest.clone(), true), (vec![0x43; 32], false)] {
            let v = c
                .subtle_verify_alpha1(pb::SubtleVerifyRequest {
                    component_name: component.into(),
                    key_name: ec.into(),
                    algorithm: "ES256".into(),
                    digest: d,
                    signature: s.signature.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(v.valid, want);
        }
    }
}

async fn http_error(r: reqwest::Response) -> (u16, String, String) {
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        s,
        v["errorCode"].as_str().unwrap_or_default().into(),
        v["message"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_and_their_errors() {
    let sc = sidecar();
    let http = Client::new();
    let base = format!("{}/v1.0-alpha1", sc.http());
    // PUT crypto/{name}/encrypt, then decrypt: the same documents as gRPC.
    let r = http
        .put(format!("{base}/crypto/keys/encrypt"))
        .header("dapr-key-name", "rsa-private.pem")
        .header("dapr-key-wrap-algorithm", "RSA")
        .header("dapr-data-encryption-cipher", "chacha20-poly1305")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let doc = r.bytes().await.unwrap().to_vec();
    check_format(&doc, 100_000, Some("rsa-private.pem"), 5, 2);
    let mut c = grpc(&sc).await;
    let (pt, err) = decrypt(
        &mut c,
        messages_dec(dec_opts("keys"), chunks_of(&doc, 10_000)),
    )
    .await;
    assert!(err.is_none());
    assert_eq!(pt, vec![7u8; 100_000]);
    let r = http
        .put(format!("{base}/crypto/keys/decrypt"))
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), vec![7u8; 100_000]);
    // An empty body is an empty message.
    let r = http
        .put(format!("{base}/crypto/keys/encrypt"))
        .header("dapr-key-name", "symmetric-256")
        .header("dapr-key-wrap-algorithm", "A256KW")
        .header("dapr-omit-decryption-key-name", "true")
        .send()
        .await
        .unwrap();
    let empty = r.bytes().await.unwrap().to_vec();
    check_format(&empty, 0, None, 1, 1);
    let r = http
        .put(format!("{base}/crypto/keys/decrypt"))
        .header("dapr-key-name", "symmetric-256")
        .body(empty)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());

    // Subtle over HTTP: protobuf JSON in and out.
    let post = |op: &str, body: Value| {
        http.post(format!("{base}/subtlecrypto/keys/{op}"))
            .json(&body)
            .send()
    };
    let v: Value = post(
        "getkey",
        json!({"name": "rsa-private.pem", "format": "PEM"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["publicKey"], fx::RSA_PUBLIC_PEM);
    assert_eq!(v["name"], "rsa-private.pem");
    let v: Value = post(
        "encrypt",
        json!({"keyName": "symmetric-256", "algorithm": "A256CBC", "plaintext": "aGVsbG8=", "nonce": "AAAAAAAAAAAAAAAAAAAAAA=="}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(v.get("tag").is_none(), "CBC has no tag: left out");
    let v: Value = post(
        "decrypt",
        json!({"key_name": "symmetric-256", "algorithm": "A256CBC", "ciphertext": v["ciphertext"], "nonce": "AAAAAAAAAAAAAAAAAAAAAA=="}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["plaintext"], "aGVsbG8=");
    let v: Value = post(
        "sign",
        json!({"keyName": "ed25519.pem", "algorithm": "EdDSA", "digest": "bWVzc2FnZQ=="}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sig = v["signature"].clone();
    let v: Value = post(
        "verify",
        json!({"keyName": "ed25519.pem", "algorithm": "EdDSA", "digest": "bWVzc2FnZQ==", "signature": sig}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v, json!({"valid": true}));
    let v: Value = post(
        "verify",
        json!({"keyName": "ed25519.pem", "algorithm": "EdDSA", "digest": "b3RoZXI=", "signature": sig}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v, json!({}), "false is protobuf JSON's default: left out");

    // Errors: daprd's codes and statuses.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            http.put(format!("{base}/crypto/nope/encrypt")),
            400,
            "ERR_CRYPTO_PROVIDER_NOT_FOUND",
            "crypto provider nope not found",
        ),
        (
            http.put(format!("{base}/crypto/keys/encrypt"))
                .header("dapr-key-wrap-algorithm", "A256KW"),
            400,
            "ERR_BAD_REQUEST",
            "invalid request: missing header 'dapr-key-name'",
        ),
        (
            http.put(format!("{base}/crypto/keys/encrypt"))
                .header("dapr-key-name", "symmetric-256"),
            400,
            "ERR_BAD_REQUEST",
            "invalid request: missing header 'dapr-key-wrap-algorithm'",
        ),
        (
            http.put(format!("{base}/crypto/keys/decrypt"))
                .body("garbage"),
            500,
            "ERR_CRYPTO",
            "failed to perform operation: invalid header: ",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/encrypt"))
                .body("{not json"),
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/sign"))
                .body(r#"{"keyName": ["a"], "digest": "AA=="}"#),
            400,
            "ERR_MALFORMED_REQUEST",
            "keyName",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/encrypt"))
                .body(r#"{"keyName": "symmetric-256", "plaintext": 12}"#),
            400,
            "ERR_MALFORMED_REQUEST",
            "plaintext",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/getkey"))
                .body(r#"{"name": "rsa-private.pem", "format": 9}"#),
            400,
            "ERR_BAD_REQUEST",
            "invalid key format",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/getkey"))
                .body(r#"{"name": "missing"}"#),
            500,
            "ERR_CRYPTO_KEY",
            "failed to retrieve key missing",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/verify"))
                .body(r#"{"keyName": "symmetric-256", "algorithm": "ES256", "digest": "AA=="}"#),
            500,
            "ERR_CRYPTO",
            "failed to perform operation: failed to verify signature",
        ),
        (
            http.post(format!("{base}/subtlecrypto/nope/getkey"))
                .body("{}"),
            400,
            "ERR_CRYPTO_PROVIDER_NOT_FOUND",
            "",
        ),
        (
            http.get(format!("{base}/subtlecrypto/keys/getkey")),
            405,
            "ERR_METHOD_NOT_ALLOWED",
            "",
        ),
        (
            http.post(format!("{base}/subtlecrypto/keys/frobnicate"))
                .body("{}"),
            404,
            "ERR_NOT_FOUND",
            "",
        ),
    ];
    for (req, status, code, msg) in cases {
        let (s, c, m) = http_error(req.send().await.unwrap()).await;
        assert_eq!((s, c.as_str()), (status, code), "{m}");
        assert!(m.contains(msg), "{m:?} does not contain {msg:?}");
    }
}

/// No crypto component at all: daprd's "not configured" on each face.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_crypto_components_configured() {
    let sc = Sidecar::start(Options {
        resources: vec![spar_tests::memory_component("mem")],
        ..Default::default()
    });
    let (s, code, _) = http_error(
        Client::new()
            .put(format!("{}/v1.0-alpha1/crypto/keys/encrypt", sc.http()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (500, "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED")
    );
    let mut c = grpc(&sc).await;
    let e = encrypt(
        &mut c,
        futures::stream::iter(only_options_enc(enc_opts("keys", "k", "A256KW"))),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert_eq!(e.message(), "crypto providers not configured");
}

/// The official Rust SDK's helpers (which read a whole body in 4 KiB
/// chunks but number every chunk 0, so only a single chunk works against
/// daprd's sequence check — and against spar's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_encrypt_decrypt() {
    use dapr::client::ClientOptions;
    let sc = sidecar();
    let mut c = dapr::Client::<dapr::client::TonicClientWithAuth>::from_options(
        ClientOptions::new().with_address(sc.grpc()),
    )
    .await
    .expect("connect");
    let data = b"a message from the Rust SDK".to_vec();
    let stream = dapr::client::ReaderStream::new(std::io::Cursor::new(data.clone()));
    let encrypted = c
        .encrypt(stream, enc_opts("keys", "symmetric-256", "A256KW"))
        .await
        .unwrap();
    assert!(!encrypted.is_empty());
    let plain = c.decrypt(encrypted, dec_opts("keys")).await.unwrap();
    assert_eq!(plain, data);
}

/// `crypto.dapr.jwks` from an HTTP URL and from a file whose path comes
/// from a secret store (`secretKeyRef`); both listed by the metadata API;
/// crypto metrics under daprd's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_file_secret_ref_metadata_metrics() {
    use axum::routing::get;
    let set = fx::jwks_json(&names_jwks());
    let served = set.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/jwks.json", get(move || async move { served }));
        axum::serve(listener, app).await.unwrap();
    });
    let keydir = tempfile::tempdir().unwrap();
    let file = keydir.path().join("jwks.json");
    std::fs::write(&file, &set).unwrap();
    let secrets = json!({"jwks-path": file.display().to_string()}).to_string();
    let sc = Sidecar::start_with_files(
        Options {
            resources: vec![
                format!(
                    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: fromurl\nspec:\n  type: crypto.dapr.jwks\n  version: v1\n  metadata:\n  - name: jwks\n    value: \"http://{addr}/jwks.json\"\n  - name: requestTimeout\n    value: 5s\n"
                ),
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: files\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: \"{dir}/secrets.json\"\n".to_string(),
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: fromfile\nspec:\n  type: crypto.dapr.jwks\n  version: v1\n  metadata:\n  - name: jwks\n    secretKeyRef:\n      name: jwks-path\n      key: jwks-path\nauth:\n  secretStore: files\n".to_string(),
            ],
            ..Default::default()
        },
        &[("secrets.json", &secrets)],
    );
    let mut c = grpc(&sc).await;
    let doc = encrypt(
        &mut c,
        messages_enc(
            enc_opts("fromurl", "rsa", "RSA-OAEP-256"),
            pattern(5000, 1000),
        ),
    )
    .await
    .unwrap();
    let (pt, err) = decrypt(
        &mut c,
        messages_dec(dec_opts("fromfile"), chunks_of(&doc, 999)),
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pt.len(), 5000);

    let http = Client::new();
    let md: Value = http
        .get(format!("{}/v1.0/metadata", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for name in ["fromurl", "fromfile"] {
        let c = md["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {md}"));
        assert_eq!(
            (c["type"].as_str(), c["version"].as_str()),
            (Some("crypto.dapr.jwks"), Some("v1"))
        );
    }
    let metrics = http
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("dapr_component_crypto_count{")
                && l.contains("component=\"fromfile\"")
                && l.contains("operation=\"crypto_op\"")
                && l.contains("success=\"true\"")
        })
        .unwrap_or_else(|| panic!("no crypto count for fromfile in\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(metrics.contains("dapr_component_crypto_latencies_bucket{"));
}

/// A crypto component added to the resources while running is served
/// after the reload, and one removed stops being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_adds_and_removes_crypto_components() {
    let sc = Sidecar::start_with_files(
        Options {
            resources: vec![localstorage("keys")],
            ..Default::default()
        },
        &KEY_FILES,
    );
    let res = sc.dir.path().join("resources");
    std::fs::write(res.join("more.yaml"), jwks_inline("added")).unwrap();
    let mut c = grpc(&sc).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = encrypt(
            &mut c,
            futures::stream::iter(only_options_enc(enc_opts("added", "sym", "A256KW"))),
        )
        .await;
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "added component never served: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(res.join("more.yaml")).unwrap();
    loop {
        let r = encrypt(
            &mut c,
            futures::stream::iter(only_options_enc(enc_opts("added", "sym", "A256KW"))),
        )
        .await;
        if let Err(e) = r {
            assert!(
                e.message().contains("crypto provider added not found"),
                "{e}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "removed component still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `component_outbound` resiliency on a crypto component: a key that
/// cannot be read (a folder where a key file should be) is a backend
/// failure — retried, then the breaker opens and even good keys are
/// refused until it closes; the metrics name the target `crypto_keys`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resiliency_retries_and_breaks_on_a_crypto_component() {
    let keydir = tempfile::tempdir().unwrap();
    std::fs::write(keydir.path().join("symmetric-256"), fx::SYMMETRIC_256_B64).unwrap();
    std::fs::create_dir(keydir.path().join("broken")).unwrap();
    let sc = Sidecar::start(Options {
        resources: vec![
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: keys\nspec:\n  type: crypto.dapr.localstorage\n  version: v1\n  metadata:\n  - name: path\n    value: \"{}\"\n",
                keydir.path().display()
            ),
            r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: cryptoresiliency
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 10ms
        maxRetries: 2
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 60s
        trip: consecutiveFailures > 2
  targets:
    components:
      keys:
        outbound:
          retry: twice
          circuitBreaker: cb
"#
            .to_string(),
        ],
        ..Default::default()
    });
    let mut c = grpc(&sc).await;
    let good = || only_options_enc(enc_opts("keys", "symmetric-256", "A256KW"));
    encrypt(&mut c, futures::stream::iter(good()))
        .await
        .expect("a good key works");
    let e = encrypt(
        &mut c,
        futures::stream::iter(only_options_enc(enc_opts("keys", "broken", "A256KW"))),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("failed to wrap the file key"), "{e}");
    // Three failed attempts (one call, two retries) tripped the breaker.
    let e = encrypt(&mut c, futures::stream::iter(good()))
        .await
        .unwrap_err();
    assert!(e.message().contains("circuit breaker is open"), "{e}");
    let metrics = Client::new()
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dapr_resiliency_activations_total{")
                && l.contains("target=\"crypto_keys\"")
                && l.contains("policy=\"retry\"")),
        "{metrics}"
    );
}

/// With `DAPR_API_TOKEN` set, every crypto call needs the token, streams
/// included (the chain runs on the first message before any data moves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_guards_crypto_calls() {
    let sc = Sidecar::start_with_files(
        Options {
            resources: vec![localstorage("keys")],
            env: vec![("DAPR_API_TOKEN".into(), "s3cret".into())],
            ..Default::default()
        },
        &KEY_FILES,
    );
    let mut c = grpc(&sc).await;
    let e = encrypt(
        &mut c,
        futures::stream::iter(only_options_enc(enc_opts(
            "keys",
            "symmetric-256",
            "A256KW",
        ))),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(futures::stream::iter(only_options_enc(enc_opts(
        "keys",
        "symmetric-256",
        "A256KW",
    ))));
    req.metadata_mut()
        .insert("dapr-api-token", "s3cret".parse().unwrap());
    let doc = encrypt(&mut c, req).await.unwrap();
    check_format(&doc, 0, Some("symmetric-256"), 1, 1);
    let r = Client::new()
        .post(format!(
            "{}/v1.0-alpha1/subtlecrypto/keys/getkey",
            sc.http()
        ))
        .body(r#"{"name":"rsa-private.pem"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// A crypto component scoped to other apps is not loaded here; one scoped
/// to this app is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_scopes_apply() {
    let app_id = spar_tests::unique("cryptoapp");
    let scoped = |name: &str, app: &str| format!("{}scopes:\n- {app}\n", jwks_inline(name));
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![scoped("mine", &app_id), scoped("theirs", "another-app")],
        ..Default::default()
    });
    let mut c = grpc(&sc).await;
    encrypt(
        &mut c,
        futures::stream::iter(only_options_enc(enc_opts("mine", "sym", "A256KW"))),
    )
    .await
    .expect("the component scoped to this app");
    let e = encrypt(
        &mut c,
        futures::stream::iter(only_options_enc(enc_opts("theirs", "sym", "A256KW"))),
    )
    .await
    .unwrap_err();
    assert!(
        e.message().contains("crypto provider theirs not found"),
        "{e}"
    );
}

/// Every subtle route and RPC: an unknown component, and (HTTP) a body that
/// is not the request message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subtle_route_refuses_bad_input() {
    let sc = sidecar();
    let http = Client::new();
    let base = format!("{}/v1.0-alpha1/subtlecrypto", sc.http());
    for op in [
        "getkey",
        "encrypt",
        "decrypt",
        "wrapkey",
        "unwrapkey",
        "sign",
        "verify",
    ] {
        let (s, code, m) = http_error(
            http.post(format!("{base}/nope/{op}"))
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, code.as_str()),
            (400, "ERR_CRYPTO_PROVIDER_NOT_FOUND"),
            "{op}: {m}"
        );
        // A field of the wrong type: `name` for getkey, `keyName` elsewhere
        // (unknown fields are ignored, as protobuf JSON does).
        let wrong_type = if op == "getkey" {
            "{\"name\": 1}"
        } else {
            "{\"keyName\": {}}"
        };
        for body in ["[]", wrong_type, "nope"] {
            let (s, code, m) = http_error(
                http.post(format!("{base}/keys/{op}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (s, code.as_str()),
                (400, "ERR_MALFORMED_REQUEST"),
                "{op} {body}: {m}"
            );
        }
    }
    let mut c = grpc(&sc).await;
    let nope = || "nope".to_string();
    let errs = vec![
        c.subtle_get_key_alpha1(pb::SubtleGetKeyRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.subtle_encrypt_alpha1(pb::SubtleEncryptRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.subtle_decrypt_alpha1(pb::SubtleDecryptRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.subtle_wrap_key_alpha1(pb::SubtleWrapKeyRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.subtle_unwrap_key_alpha1(pb::SubtleUnwrapKeyRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.subtle_sign_alpha1(pb::SubtleSignRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.subtle_verify_alpha1(pb::SubtleVerifyRequest {
            component_name: nope(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err(),
    ];
    for e in errs {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert_eq!(e.message(), "crypto provider nope not found");
    }
    // An empty key to wrap is not a key.
    let e = c
        .subtle_wrap_key_alpha1(pb::SubtleWrapKeyRequest {
            component_name: "keys".into(),
            key_name: "symmetric-256".into(),
            algorithm: "A256KW".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert!(e.message().contains("failed to parse plaintext key"), "{e}");
}
